"""The model-dependent inputs of some CAM programs, computed as pytorch-grad-cam 1.5.7 does.

- `score_cam_scores`: Score-CAM's channel scores (`score: [k]`), pytorch_grad_cam/score_cam.py;
- `ablation_scores`: Ablation-CAM's ablated target scores (`ablation: [k]`),
  pytorch_grad_cam/ablation_cam.py with its AblationLayer / AblationLayerVit;
- `hessian_vector_product`: ShapleyCAM's Hessian-vector product (`H: [k,h,w]`),
  pytorch_grad_cam/shapley_cam.py;
- `classifier_weights`: the classifier row of the target class (`W: [k]`, the original CAM),
  when the layer is followed by global average pooling and a linear head.

Shared by `camc.torch.CAM` and the exporter. Every function takes the model, the `LayerTap` on
the CAM layer, the model input batch, the activations and one target per image (an int class or
a callable mapping one output row to a scalar), runs without gradients where it can, and
returns tensors on the model's device.
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .._errors import InputError, InputTypeError
from ._capture import LayerTap
from ._targets import ClassifierOutputTarget, TargetsLike, _is_int, resolve_targets

__all__ = [
    "score_cam_scores",
    "ablation_scores",
    "hessian_vector_product",
    "HessianResult",
    "classifier_weights",
    "ABLATION_VALUE",
]

TargetSeq = Sequence[Union[int, Callable[[torch.Tensor], torch.Tensor]]]

# pytorch-grad-cam's AblationLayer: how far below the minimum activation an ablated channel is
# set when that minimum is not 0.
ABLATION_VALUE = 1e7


def _callables(targets: TargetSeq, n: int, what: str) -> List[Callable[[torch.Tensor], torch.Tensor]]:
    if targets is None or len(targets) != n:
        got = "None" if targets is None else f"{len(targets)}"
        raise InputError(f"{what}: needs one target per image ({n}), got {got}")
    out = []
    for i, t in enumerate(targets):
        if _is_int(t):
            out.append(ClassifierOutputTarget(int(t)))
        elif callable(t):
            out.append(t)
        else:
            raise InputTypeError(f"{what}: target {i} is a {type(t).__name__}, not an int or a callable")
    return out


def _scalar(value, device) -> torch.Tensor:
    """A target's value as a 0-d float32 tensor (pytorch-grad-cam reads it with `.item()`)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InputError(
                f"a target must map one output row to a scalar, but it returned shape {list(value.shape)}"
            )
        return value.detach().reshape(()).float()
    return torch.tensor(float(value), dtype=torch.float32, device=device)


def _forward_tensor(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor):
        raise InputTypeError(
            f"the model returns a {type(out).__name__}, not a tensor; wrap it so that it returns the "
            "output tensor the targets read (e.g. the logits)"
        )
    return out


def score_cam_scores(
    model: nn.Module,
    tap: Optional[LayerTap],
    inputs: torch.Tensor,
    activations: torch.Tensor,
    targets: TargetSeq,
    batch_size: int = 16,
) -> torch.Tensor:
    """Score-CAM channel scores `[n, k]` (float32, on the activations' device).

    As pytorch-grad-cam's ScoreCAM.get_cam_weights, before its softmax: the activations
    `[n, k, h, w]` (after any reshape_transform) are upsampled to the input size with bilinear
    interpolation, `align_corners=True` (`torch.nn.UpsamplingBilinear2d`), each channel is
    min-max normalized, `(x - min) / (max - min + 1e-8)`, and `score[i, c]` is
    `targets[i](model(inputs[i] * mask[i, c]))`, the masked copies run `batch_size` at a time
    under `torch.no_grad()`. `tap` (the CAM layer's tap, or None) records nothing meanwhile.
    """
    if activations.dim() != 4:
        raise InputError(
            f"Score-CAM masks the input with 2-D activation maps [n, k, h, w]; got shape {list(activations.shape)}"
        )
    if inputs.dim() != 4:
        raise InputError(f"Score-CAM needs image inputs [n, C, H, W]; got shape {list(inputs.shape)}")
    n, k = activations.shape[:2]
    if inputs.shape[0] != n:
        raise InputError(f"{inputs.shape[0]} inputs but activations for {n} images")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    fns = _callables(targets, n, "score_cam_scores")
    device = activations.device
    suspend = tap.suspended() if tap is not None else _null()
    with torch.no_grad(), suspend:
        x = inputs.to(device)
        up = F.interpolate(activations, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=True)
        flat = up.reshape(n, k, -1)
        maxs = flat.max(dim=-1)[0][:, :, None, None]
        mins = flat.min(dim=-1)[0][:, :, None, None]
        masks = (up - mins) / (maxs - mins + 1e-8)
        del up, flat
        rows: List[torch.Tensor] = []
        for i in range(n):
            for c0 in range(0, k, batch_size):
                batch = x[i][None] * masks[i, c0 : c0 + batch_size, None]
                out = _forward_tensor(model, batch)
                rows.extend(_scalar(fns[i](o), device) for o in out)
        return torch.stack(rows).reshape(n, k).to(device)


def ablation_scores(
    model: nn.Module,
    tap: LayerTap,
    inputs: torch.Tensor,
    activations: torch.Tensor,
    targets: TargetSeq,
    batch_size: int = 32,
    channel_dim: int = 1,
) -> torch.Tensor:
    """Ablation-CAM's ablated target scores `[n, k]` (float32, on the activations' device).

    As pytorch-grad-cam's AblationCAM.get_cam_weights with ratio_channels_to_ablate=1.0:
    `ablation[i, c]` is `targets[i](model(inputs[i]))` with the layer's output replaced by image
    i's activations in which channel c is ablated. `activations` are the layer's own outputs
    (`tap.activation`, before any reshape_transform); `channel_dim` is their channel axis: 1 for
    convolutional layers (AblationLayer), -1 for token layers [n, tokens, channels]
    (AblationLayerVit, whose ablation covers every token, the class token included).

    The ablated value follows the library's AblationLayer exactly: 0 when the image's minimum
    activation is 0; otherwise, within each forward batch of `batch_size` channels, the j-th
    ablated channel (j = 0, 1, ...) is set to `min - (j + 1) * 1e7` (the library recomputes
    `torch.min(output) - 1e7` after each row, in the activations' dtype), so the values depend
    on `batch_size` as the library's do. The tap's `replace` does the ablation (the layer still
    runs; its output is replaced), under `torch.no_grad()`.
    """
    if tap is None:
        raise InputError("ablation_scores needs the LayerTap of the CAM layer (it replaces the layer's output)")
    if activations.dim() < 2:
        raise InputError(f"activations must be [n, ...] with a channel axis; got shape {list(activations.shape)}")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    n = activations.shape[0]
    if inputs.shape[0] != n:
        raise InputError(f"{inputs.shape[0]} inputs but activations for {n} images")
    cd = channel_dim % activations.dim()
    if cd == 0:
        raise InputError("channel_dim must not be the batch axis")
    k = activations.shape[cd]
    fns = _callables(targets, n, "ablation_scores")
    device = activations.device
    rows: List[torch.Tensor] = []
    with torch.no_grad(), tap.suspended():
        x = inputs.to(device)
        for i in range(n):
            act = activations[i]
            amin = torch.min(act)
            zero = bool(amin == 0)
            for c0 in range(0, k, batch_size):
                m = min(batch_size, k - c0)
                abl = act.unsqueeze(0).repeat(m, *([1] * act.dim()))
                view = abl.movedim(cd, 1)
                value = amin
                for j in range(m):
                    if zero:
                        view[j, c0 + j] = 0
                    else:
                        value = value - ABLATION_VALUE
                        view[j, c0 + j] = value

                def replace(output: torch.Tensor, abl: torch.Tensor = abl) -> torch.Tensor:
                    if not isinstance(output, torch.Tensor) or output.shape != abl.shape:
                        got = list(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                        raise InputError(
                            f"layer `{tap.name}`: its output ({got}) does not have the shape of the "
                            f"ablated activations {list(abl.shape)}"
                        )
                    return abl

                batch = x[i : i + 1].repeat(m, *([1] * (x.dim() - 1)))
                tap.replace = replace
                try:
                    out = _forward_tensor(model, batch)
                finally:
                    tap.replace = None
                rows.extend(_scalar(fns[i](o), device) for o in out)
    return torch.stack(rows).reshape(n, k).to(device)


class HessianResult(NamedTuple):
    """What `hessian_vector_product` computed."""

    outputs: torch.Tensor
    """The model output of the pass (detached)."""
    targets: List[Callable[[torch.Tensor], torch.Tensor]]
    """The target callable of each image (argmax classes when none were given)."""
    hvp: List[torch.Tensor]
    """One Hessian-vector product per tap, detached, in the layer's layout (before any
    reshape_transform); zeros where the gradient does not depend on the activations."""


def hessian_vector_product(
    model: nn.Module,
    taps: Union[LayerTap, Sequence[LayerTap]],
    inputs: torch.Tensor,
    targets: TargetsLike = None,
) -> HessianResult:
    """ShapleyCAM's Hessian-vector product, as pytorch-grad-cam's ShapleyCAM.

    One forward pass with gradients, `loss = sum_i targets[i](output[i])` (targets None: the
    argmax class of each row), the gradients with respect to the input taken with
    `create_graph=True` (the taps' tensor hooks record the layers' gradients, graph-connected),
    then per tap `hvp = autograd.grad(gradient, activation, grad_outputs=activation)`; zeros
    when the gradient does not depend on the activations (a piecewise-linear head: ReLU,
    pooling, linear layers give a zero Hessian almost everywhere).

    The taps hand the rest of the model a copy of each layer's output during this pass, so the
    product is taken with respect to the layer's own output even when a later op works in
    place (a BatchNorm before ReLU(inplace=True)); pytorch-grad-cam differentiates the
    overwritten tensor there, which the gradient does not depend on, and gets 0.

    Afterwards each tap holds `activation` and `gradient` (detached copies) as after an
    ordinary pass; no graph is kept. Returns `HessianResult(outputs, targets, hvp)`.
    """
    tap_list = [taps] if isinstance(taps, LayerTap) else list(taps)
    if not tap_list:
        raise InputError("hessian_vector_product needs at least one LayerTap")
    was_enabled = [t.enabled for t in tap_list]
    for t in tap_list:
        t.reset()
        t.enabled, t.want_grad, t.keep_graph = True, True, True
    x = inputs.detach().requires_grad_(True)
    try:
        with torch.enable_grad():
            outputs = _forward_tensor(model, x)
            for t in tap_list:
                if t.calls != 1:
                    raise _calls_error(t)
            fns = resolve_targets(targets, outputs)
            loss = sum(fn(o) for fn, o in zip(fns, outputs))
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                raise InputError("the target scores do not depend on the input; no gradient to take")
            torch.autograd.grad(loss, x, retain_graph=True, create_graph=True)
            for t in tap_list:
                t.want_grad = False  # the products below flow through the hooks again
            hvps: List[torch.Tensor] = []
            for idx, t in enumerate(tap_list):
                if t.graph_gradient is None or t.output is None:
                    raise InputError(
                        f"layer `{t.name}`: no gradient reached it (is the target computed from this layer?)"
                    )
                if t.graph_gradient.requires_grad:
                    h = torch.autograd.grad(
                        outputs=t.graph_gradient,
                        inputs=t.output,
                        grad_outputs=t.output,
                        retain_graph=idx < len(tap_list) - 1,
                        allow_unused=True,
                    )[0]
                else:
                    h = None
                hvps.append(torch.zeros_like(t.activation) if h is None else h.detach())
        return HessianResult(outputs.detach(), fns, hvps)
    finally:
        for t, was in zip(tap_list, was_enabled):
            t.output, t.graph_gradient = None, None
            t.want_grad, t.keep_graph, t.enabled = False, False, was


def _calls_error(t: LayerTap) -> InputError:
    if t.calls == 0:
        return InputError(
            f"layer `{t.name}` never ran in the forward pass; pick a module the model calls "
            "(print(model) lists them)"
        )
    return InputError(
        f"layer `{t.name}` ran {t.calls} times in one forward pass (a shared module); "
        "pick a module that runs once"
    )


def find_head(
    model: nn.Module, activations: torch.Tensor, outputs: torch.Tensor, name: Optional[str] = None
) -> Tuple[Optional[str], Optional[nn.Linear]]:
    """The linear head that follows global average pooling of the layer: `(name, module)`, or
    `(None, None)` when there is none.

    The head is the `nn.Linear` called `name`, or else the last one of the model with `k` inputs
    and as many outputs as the model, whose result on the spatial mean of `activations`
    (`[n, k, ...]`, after any reshape_transform) reproduces the model output `outputs`
    `[n, classes]` within 1e-3 of its scale. A `name` that is not such a head is a
    `camc.InputError` ("--head NAME: ..."), as the exporter's `--head` reports it.
    """
    k = activations.shape[1]
    pooled = activations.detach().flatten(2).mean(-1)
    logits = outputs.detach()
    scale = float(logits.abs().max()) + 1.0

    def reproduces(head: nn.Linear) -> float:
        with torch.no_grad():
            return float((head(pooled.to(head.weight.dtype)) - logits).abs().max())

    if name is not None:
        try:
            head = model.get_submodule(name)
        except (AttributeError, KeyError, IndexError, ValueError):
            raise InputError(f"--head {name}: the model has no such module") from None
        if not isinstance(head, nn.Linear):
            raise InputError(f"--head {name}: is a {type(head).__name__}, not nn.Linear")
        if head.in_features != k:
            raise InputError(f"--head {name}: takes {head.in_features} features but the layer has {k} channels")
        diff = reproduces(head)
        if diff > 1e-3 * scale:
            raise InputError(
                f"--head {name}: head(global average of A) differs from the model's logits by {diff:.3g}; "
                "the layer is not followed by global average pooling + this linear layer "
                "(choose the last feature layer, or pass --no-head)"
            )
        return name, head
    for head_name, head in reversed(list(model.named_modules())):
        if isinstance(head, nn.Linear) and head.in_features == k and head.out_features == logits.shape[1]:
            if reproduces(head) <= 1e-3 * scale:
                return head_name, head
    return None, None


def classifier_weights(
    model: nn.Module,
    activations: torch.Tensor,
    outputs: torch.Tensor,
    classes: Sequence[int],
) -> torch.Tensor:
    """The original CAM's channel weights `[n, k]`: the weight row of each image's class in the
    linear head that follows global average pooling of the layer (`find_head`). None found:
    `camc.InputError`.
    """
    if outputs.dim() != 2:
        raise InputError(f"`W` needs a [batch, classes] model output; got shape {list(outputs.shape)}")
    _, head = find_head(model, activations, outputs)
    if head is None:
        raise InputError(
            "program parameter `W` (the classifier weights of the original CAM) needs a linear head "
            "right after global average pooling of the CAM layer, and none of the model's nn.Linear "
            f"layers with {activations.shape[1]} inputs reproduces its output from the layer's average; use the last "
            "feature layer, or a gradient method (gradcam equals fc_cam up to scale there)"
        )
    idx = torch.as_tensor(list(classes), dtype=torch.long, device=head.weight.device)
    return head.weight.detach()[idx].float().to(activations.device)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None
