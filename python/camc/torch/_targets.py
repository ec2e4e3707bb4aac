"""Targets: what score of the model output a CAM explains.

A target is any callable mapping one row of the model output (e.g. the `[classes]` logits of
one image) to a scalar tensor, as in pytorch-grad-cam (`pytorch_grad_cam.utils.model_targets`);
camc's `ClassifierOutputTarget` and `ClassifierOutputSoftmaxTarget` behave like that library's
classes of the same names, and that library's target objects work unchanged.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import torch

from .._errors import InputError, InputTypeError

__all__ = ["ClassifierOutputTarget", "ClassifierOutputSoftmaxTarget", "Target", "TargetsLike",
           "resolve_targets", "target_classes"]

Target = Callable[[torch.Tensor], torch.Tensor]
TargetsLike = Union[None, int, Sequence[Union[int, Target]], torch.Tensor]


class ClassifierOutputTarget:
    """The logit of class `category`: `model_output[category]` (or `[:, category]` for a batch)."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if len(model_output.shape) == 1:
            return model_output[self.category]
        return model_output[:, self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputTarget({self.category})"


class ClassifierOutputSoftmaxTarget:
    """The softmax probability of class `category` (softmax over the last axis)."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if len(model_output.shape) == 1:
            return torch.softmax(model_output, dim=-1)[self.category]
        return torch.softmax(model_output, dim=-1)[:, self.category]

    def __repr__(self) -> str:
        return f"ClassifierOutputSoftmaxTarget({self.category})"


def _is_int(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    try:
        import numpy as np

        if isinstance(value, np.integer):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point() \
        and value.dtype != torch.bool


def resolve_targets(targets: TargetsLike, outputs: torch.Tensor) -> List[Target]:
    """One target callable per image of `outputs` (the model output, `[n, ...]`).

    `None`: the argmax class of each row (`outputs` must be `[n, classes]`); an int: that class
    for every image; a list (or 1-D integer tensor) with one entry per image, each an int class
    or a callable `row -> scalar`.
    """
    n = outputs.shape[0]
    if targets is None:
        if outputs.dim() != 2:
            raise InputError(
                f"targets=None explains the argmax class of a [batch, classes] output, but the model "
                f"returns shape {list(outputs.shape)}; pass one target per image"
            )
        classes = outputs.detach().argmax(dim=-1).tolist()
        return [ClassifierOutputTarget(int(c)) for c in classes]
    if isinstance(targets, torch.Tensor):
        if targets.is_floating_point() or targets.dim() > 1:
            raise InputTypeError(
                f"targets as a tensor must be 1-D integer class indices, got {targets.dtype} "
                f"of shape {list(targets.shape)}"
            )
        targets = [int(t) for t in targets.reshape(-1).tolist()]
    if _is_int(targets):
        targets = [int(targets)] * n
    if callable(targets) and not isinstance(targets, (list, tuple)):
        targets = [targets] * n
    try:
        targets = list(targets)
    except TypeError:
        raise InputTypeError(
            f"targets must be None, an int, or a list of ints or target callables, "
            f"got {type(targets).__name__}"
        ) from None
    if len(targets) != n:
        raise InputError(f"{len(targets)} targets for {n} images; give one per image")
    out: List[Target] = []
    for i, t in enumerate(targets):
        if _is_int(t):
            c = int(t)
            if outputs.dim() == 2 and not -outputs.shape[1] <= c < outputs.shape[1]:
                raise InputError(
                    f"target class {c} (image {i}) is out of range: the model has {outputs.shape[1]} classes"
                )
            out.append(ClassifierOutputTarget(c))
        elif callable(t):
            out.append(t)
        else:
            raise InputTypeError(
                f"target {i} is a {type(t).__name__}; a target is an int class or a callable "
                "mapping one output row to a scalar (e.g. ClassifierOutputTarget(3))"
            )
    return out


def target_classes(targets: Sequence[Target]) -> Optional[List[int]]:
    """The class index of each target (`.category` of ClassifierOutputTarget-like objects), or
    None when some target has no integer `category`."""
    classes = []
    for t in targets:
        c = getattr(t, "category", None)
        if not _is_int(c):
            return None
        classes.append(int(c))
    return classes
