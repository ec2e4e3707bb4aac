"""Opti-CAM's optimization (Zhang et al. 2023; official code `hanwei0912/OptiCAM`, util.py,
`Basic_OptCAM`) for any program with a learnable per-image parameter.

The target layer's activations are captured once. The parameter (`w: [k]`, one vector per
image, initialised to `init`) is then optimized with Adam so that the model's score of the
target class on the masked input `x · S` approaches its score on `x`, where `S` is the
program's map post-processed to the input size (min-max, bilinear resize, min-max) — the
gradient with respect to the parameter comes from the program's backward kernel (docs/ir.md,
Gradients). As the official code: the loss is Σ over the batch of |f(x) − f(x · S)|; every
`steps // 10` steps, when the loss has grown since the last check, the optimization stops and
the map of that step is returned; otherwise the map of the final parameter.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

from .._errors import InputError, InputTypeError
from ._targets import TargetsLike, target_classes

OBJECTIVES = ("logit", "prob")


def _score(outputs: torch.Tensor, classes: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "prob":
        outputs = torch.softmax(outputs, dim=1)
    return outputs.gather(1, classes.view(-1, 1)).squeeze(1)


def learned_maps(
    cam,
    prog,
    input_tensor: torch.Tensor,
    targets: TargetsLike,
    init: Union[float, torch.Tensor] = 0.5,
    steps: int = 50,
    lr: float = 0.1,
    objective: str = "logit",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The maps `[n, H, W]` and the learned parameter `[n, ...]` of `cam.learn` (see the module
    docs) for a batch, with `cam`'s model, layer and program `prog`."""
    if objective not in OBJECTIVES:
        raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive int, got {steps!r}")
    if len(cam._taps) != 1:
        raise InputError("a learned parameter is optimized on one target layer")
    model = cam.model
    x = input_tensor.to(cam.device)
    try:
        outputs, fns, _ = cam._capture(x, targets)
        tap = cam._taps[0]
        a = cam._reshape(tap.activation, tap, "activations").detach()
    finally:
        for t in cam._taps:
            t.reset()
            t.enabled = False
    classes = target_classes(fns)
    if classes is None:
        raise InputError("a learned map scores a class per image: give int targets "
                         "(or target objects with an int `category`)")
    classes = torch.tensor(classes, dtype=torch.int64, device=x.device)
    with torch.no_grad():
        reference = _score(outputs, classes, objective)
    shape = (int(a.shape[0]), int(a.shape[1]))
    param_ty = dict(prog.params)[cam.learn]
    if param_ty != "[k]":
        raise InputError(f"`{cam.learn}: {param_ty}`: the learned parameter must be [k]")
    if isinstance(init, torch.Tensor):
        if tuple(init.shape) != shape:
            raise InputError(f"init has shape {list(init.shape)}; `{cam.learn}` is {list(shape)}")
        param = init.detach().to(device=a.device, dtype=torch.float32).clone()
    elif isinstance(init, (int, float)) and not isinstance(init, bool):
        param = torch.full(shape, float(init), device=a.device)
    else:
        raise InputTypeError(f"init must be a number or a tensor, got {type(init).__name__}")
    param.requires_grad_(True)
    optimizer = torch.optim.Adam([param], lr=lr)
    size = tuple(int(s) for s in x.shape[2:])
    tensors = {"A": a}

    def maps_of(p: torch.Tensor) -> torch.Tensor:
        return prog(size=size, **tensors, **{cam.learn: p}, **cam.scalars)

    check = max(1, steps // 10)
    previous = float("inf")
    for step in range(steps):
        with torch.enable_grad():
            maps = maps_of(param)
            masked = maps.unsqueeze(1) * x
            loss = (reference - _score(model(masked), classes, objective)).abs().sum()
            (grad,) = torch.autograd.grad(loss, [param])
        value = float(loss.detach())
        if step % check == 0 and value > previous:
            return maps.detach(), param.detach()
        if step % check == 0:
            previous = value
        param.grad = grad
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with torch.no_grad():
        return maps_of(param).detach(), param.detach()


def optimize(
    model: torch.nn.Module,
    target_layers,
    program,
    input_tensor: torch.Tensor,
    targets: TargetsLike = None,
    *,
    param: str = "w",
    init: Union[float, torch.Tensor] = 0.5,
    steps: int = 50,
    lr: float = 0.1,
    objective: str = "logit",
    return_params: bool = False,
    reshape_transform=None,
):
    """Maps of `program` whose per-image parameter `param` (`[k]`) is learned by Opti-CAM's
    optimization on this batch (see the module docs): `"opticam"` is the official method; any
    program with a `[k]` parameter works (e.g. start from Grad-CAM's weights: `init=` a tensor
    `[n, k]`). `objective`: `"logit"` (the official score) or `"prob"` (softmax probability).
    Returns the maps `[n, H, W]`, and the learned parameter `[n, k]` too with
    `return_params=True`."""
    from ._cam import CAM

    with CAM(model, target_layers, program=program, learn=param, reshape_transform=reshape_transform) as cam:
        maps, learned = learned_maps(cam, cam.program, input_tensor, targets, init, steps, lr, objective)
    maps = maps.to(device=input_tensor.device, dtype=torch.float32)
    return (maps, learned) if return_params else maps
