"""Layer capture: a forward hook that copies a layer's output and a tensor hook for its gradient.

`LayerTap` is shared by `camc.torch.CAM` and the exporter (`camc.export`). Besides the copy and
the gradient it has: `enabled` (a
disabled tap does nothing, so a model used between CAM calls pays no copies and keeps no
tensors), `keep_graph` (also keep the graph-connected output and gradient, for second-order
quantities such as ShapleyCAM's Hessian-vector product) and `reset()`.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from .._errors import InputTypeError

__all__ = ["LayerTap"]


class LayerTap:
    """Records a copy of a layer's output and the gradient with respect to it.

    The copy (`detach().clone()`) is taken inside the forward hook, before any later in-place
    op (`ReLU(inplace=True)`, `x += ...`) can overwrite the tensor. The gradient comes from a
    hook on the output tensor itself, registered before those in-place ops, so autograd gives
    it with respect to the value the layer produced (the one that was copied).

    Attributes (read them after a forward / backward pass):

    - `activation`: the copied output (detached, on the layer's device, the layer's layout:
      no reshape_transform applied), or None;
    - `gradient`: the detached gradient with respect to it, or None;
    - `calls`: how many times the layer ran since the last `reset()` while the tap was enabled;
    - `replace`: when set, a function `output -> tensor` whose result replaces the layer's
      output (Ablation-CAM's ablated activations); applied even when the tap is disabled, and
      nothing is recorded then;
    - `extend`: when set (and the tap enabled), a function `output -> tensor` applied after the
      output is recorded, whose result the rest of the model gets instead (Recipro-CAM's output
      followed by its mosaic copies);
    - `want_grad`: register the gradient hook (only when the output requires grad; the hook
      records only while `want_grad` is still True), and keep `output`, the graph-connected
      output, with `output_version` (its `_version` then: a later in-place op changes it), so
      that the gradient can be taken with `torch.autograd.grad(loss, tap.output)`;
    - `keep_graph`: also keep `graph_gradient` (the gradient as autograd gave it,
      graph-connected under `create_graph=True`), and hand the rest of the model a copy of the
      output (`output.clone()`), so that `output` stays the layer's own value even when a later
      op works in place;
    - the caller must `reset()` after a pass with `want_grad` so that no graph outlives it;
    - `enabled`: when False the hook returns at once (no copy, no count, no error).

    A layer whose output is not a tensor raises `camc.InputTypeError` from the forward pass
    (only while the tap is enabled).
    """

    def __init__(self, layer: nn.Module, name: Optional[str] = None) -> None:
        self.layer = layer
        self.name = name if name is not None else type(layer).__name__
        self.activation: Optional[torch.Tensor] = None
        self.gradient: Optional[torch.Tensor] = None
        self.output: Optional[torch.Tensor] = None
        self.output_version = 0
        self.graph_gradient: Optional[torch.Tensor] = None
        self.replace: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.extend: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.want_grad = False
        self.keep_graph = False
        self.enabled = True
        self.calls = 0
        self.handle = layer.register_forward_hook(self._forward)

    def _forward(self, module: nn.Module, inputs, output):
        if self.replace is not None:
            return self.replace(output)
        if not self.enabled:
            return None
        if not isinstance(output, torch.Tensor):
            raise InputTypeError(
                f"layer `{self.name}` returns a {type(output).__name__}, not a tensor; "
                "pick a module that returns one tensor (e.g. a convolution, a block, a norm layer)"
            )
        self.calls += 1
        self.activation = output.detach().clone()
        if self.want_grad and output.requires_grad:
            self.output = output
            self.output_version = output._version
            output.register_hook(self._backward)
            if self.keep_graph:
                # The rest of the model gets a copy, so that no later in-place op changes the
                # tensor second-order quantities are taken with respect to.
                output = output.clone()
                return output if self.extend is None else self.extend(output)
        return None if self.extend is None else self.extend(output)

    def _backward(self, grad: torch.Tensor) -> None:
        if not self.want_grad:
            # A later backward through the same graph (a Hessian-vector product differentiates
            # the gradient with respect to this output) must not overwrite the gradient.
            return
        if self.keep_graph:
            self.graph_gradient = grad
        else:
            self.output = None  # the graph is not needed any more
        self.gradient = grad.detach().clone()

    def reset(self) -> None:
        """Drops every recorded tensor (activation, gradient, graph references) and the count."""
        self.activation = None
        self.gradient = None
        self.output = None
        self.output_version = 0
        self.graph_gradient = None
        self.calls = 0

    @contextlib.contextmanager
    def suspended(self) -> Iterator["LayerTap"]:
        """Within the block the tap records nothing (`replace` still applies)."""
        was = self.enabled
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = was

    @property
    def output_intact(self) -> bool:
        """True when `output` is kept and no in-place op changed it after the layer returned it
        (then the gradient with respect to it is the gradient the hook would record)."""
        return self.output is not None and self.output._version == self.output_version

    @property
    def closed(self) -> bool:
        """True once `close()` removed the hook."""
        return self.handle is None

    def close(self) -> None:
        """Removes the forward hook and drops the recorded tensors; idempotent."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
        self.replace = None
        self.extend = None
        self.want_grad = False
        self.keep_graph = False
        self.reset()

    def __enter__(self) -> "LayerTap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("enabled" if self.enabled else "disabled")
        return f"LayerTap({self.name}, {state})"
