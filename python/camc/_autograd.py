"""Compiled programs as `torch.autograd.Function`s: when a torch tensor passed to a `camc.Program`
requires a gradient, the maps are computed by camc's kernel and their gradient by the program's
backward kernels (docs/ir.md, Gradients), one per tensor that needs it, on the same device and
with the same zero-copy rules. With `size`, the post-processing (min-max, bilinear resize,
min-max) runs as torch operations so that a loss on the resized maps reaches the inputs.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ._errors import InputError

# The name of the backward kernels' input holding the gradient of the loss with respect to
# the raw maps (camc_compiler::grad::OUT_GRAD).
OUT_GRAD = "@out_grad"
_RESIZE_MODES = {2: "bilinear", 3: "trilinear"}


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per image `(x - min) / (max(x - min) + 1e-7)`, as camc's post-processing (SPEC §3)."""
    dims = tuple(range(1, x.dim()))
    x = x - x.amin(dim=dims, keepdim=True)
    return x / (1e-7 + x.amax(dim=dims, keepdim=True))


def postprocess(raw: torch.Tensor, size: List[int]) -> torch.Tensor:
    """camc's post-processing of raw maps `[n, h, w]` (or `[n, d, h, w]`) as torch operations:
    non-finite values set to 0, min-max, resize with half-pixel centres (no antialiasing),
    min-max again."""
    mode = _RESIZE_MODES.get(len(size))
    if mode is None or raw.dim() != len(size) + 1:
        raise InputError(f"size {tuple(size)} does not fit maps of shape {list(raw.shape[1:])}")
    x = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    x = F.interpolate(_minmax(x).unsqueeze(1), size=tuple(size), mode=mode, align_corners=False)
    return _minmax(x.squeeze(1))


class _ProgramFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, program, knobs, names, *values):
        tensors = dict(zip(names, values))
        ctx.program, ctx.knobs, ctx.names = program, knobs, names
        ctx.save_for_backward(*values)
        return program._run_torch(tensors, None, knobs)

    @staticmethod
    def backward(ctx, grad_maps):
        values = ctx.saved_tensors
        program, names = ctx.program, ctx.names
        tensors = dict(zip(names, values))
        tensors[OUT_GRAD] = grad_maps.detach().to(torch.float32).contiguous()
        shared = {name for name, ty in program.params if ty.startswith("shared")}
        grads: List[Optional[torch.Tensor]] = []
        for i, (name, value) in enumerate(zip(names, values)):
            if not ctx.needs_input_grad[3 + i]:
                grads.append(None)
                continue
            g = program._run_torch(tensors, None, ctx.knobs, grad=name)
            if name in shared:
                g = g.sum(dim=0)  # one contribution per image to a tensor all images share
            grads.append(g.reshape(value.shape).to(value.dtype))
        return (None, None, None, *grads)


def differentiable(program, tensors: Dict[str, Any], size: Optional[List[int]], knobs: Dict[str, float]):
    """The maps of `program` on `tensors`, as part of torch's autograd graph."""
    names = tuple(tensors)
    values = []
    for name in names:
        t = tensors[name]
        if t.requires_grad and not t.is_floating_point():
            raise InputError(f"`{name}` requires a gradient but is not a floating-point tensor")
        values.append(t)
    raw = _ProgramFunction.apply(program, knobs, names, *values)
    return raw if size is None else postprocess(raw, size)
