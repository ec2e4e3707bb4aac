"""`camc.torch.CAM`: a compiled CAM program on a PyTorch model, as a drop-in for pytorch-grad-cam.

    from camc.torch import CAM
    cam = CAM(model, target_layers=[model.layer4[-1]], program="gradcampp")
    maps = cam(input_tensor, targets=None)   # torch.float32 [n, H, W] on input_tensor's device

The program's parameters say what the model must provide (docs/python.md):

| parameter | what CAM computes |
|---|---|
| `A: [k,h,w]` | the layer's activations (a copy taken in the forward hook) |
| `G: [k,h,w]` | gradients of the summed target scores `sum(target(row))` with respect to the layer's output (pytorch-grad-cam's; `.grad` untouched) |
| `H: [k,h,w]` | ShapleyCAM's Hessian-vector product (`hessian_vector_product`) |
| `score: [k]` | Score-CAM's masked-input scores (`score_cam_scores`) |
| `ablation: [k]`, `logit: []` | Ablation-CAM's ablated scores (`ablation_scores`) and the clean target score |
| `W: [k]` | the classifier row of the target class (`classifier_weights`; a GAP + linear head only) |
| `target: []` | the class index of each image |

Scalar parameters with a default (`eps`, FEM's `k`) keep it unless `scalars={"eps": ...}` sets
them. Anything else is a `camc.InputError` naming the parameter.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .. import Program
from .. import compile as _camc_compile
from .._camc import stdlib_source
from .._errors import Error, InputError, InputTypeError
from ._capture import LayerTap
from ._method_inputs import (
    _calls_error,
    _scalar,
    ablation_scores,
    classifier_weights,
    find_head,
    hessian_vector_product,
    score_cam_scores,
)
from ._recipro import RECIPRO_METHODS, RECIPRO_PROGRAM, mosaic, placements, recipro_scores
from ._targets import TargetsLike, resolve_targets, target_classes

__all__ = ["CAM", "aggregate_layers"]

# What CAM can provide, with the type the program must declare.
_MAP_TYPES = ("[k,h,w]", "[k,d,h,w]")
_PROVIDED: Dict[str, Tuple[str, ...]] = {
    "A": _MAP_TYPES,
    "G": _MAP_TYPES,
    "H": _MAP_TYPES,
    "score": ("[k]",),
    "ablation": ("[k]",),
    "logit": ("[]",),
    "W": ("[k]",),
    "target": ("[]",),
    "recipro": ("[h,w]",),
}

# eigen_smooth=True: pytorch-grad-cam replaces the channel sum of the weighted activations by
# their projection on the first principal component (get_2d_projection), then applies its ReLU.
# These are the stdlib programs with `sum[k](...)` -> `pc1[k](...)` (pc1 fixes the SVD sign so
# that the projection correlates non-negatively with sum[k] of its argument, stdlib/eigencam.cam).
# EigenCAM, EigenGradCAM and FEM ignore eigen_smooth in pytorch-grad-cam, and here.
# eigen_smooth (pytorch-grad-cam's `get_2d_projection` of the weighted activations in place of
# their channel sum): the stdlib method with its one `relu(sum[k](` made `relu(pc1[k](` (pc1's
# sign rule: stdlib/eigencam.cam). The Eigen methods and FEM ignore eigen_smooth, as there.
_EIGEN_SMOOTHED = ("gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "gradcam_elementwise",
                   "scorecam", "ablationcam", "shapleycam")
_EIGEN_UNCHANGED = ("eigencam", "eigengradcam", "fem")

# pytorch-grad-cam's defaults: ScoreCAM reads `self.batch_size` (16 when unset), AblationCAM
# takes batch_size=32.
_SCORE_BATCH = 16
_ABLATION_BATCH = 32
# Recipro-CAM: model inputs per forward pass (images plus their h·w copies each); at least one
# image and its copies.
_RECIPRO_BATCH = 256
# Share of the GPU's free memory the copies' forward passes may take when CAM sizes them.
_RECIPRO_MEMORY_SHARE = 0.5


def inputs_that_fit(free_bytes: int, peak_bytes: int, inputs: int) -> int:
    """Model inputs per Recipro-CAM forward pass on a GPU: as many as `_RECIPRO_MEMORY_SHARE` of
    the free memory holds, at `peak_bytes / inputs` each (the peak of a pass over one image's
    `inputs` = 1 + h·w rows), and never fewer than one image's rows."""
    per_input = max(1.0, peak_bytes / max(1, inputs))
    return max(inputs, int(_RECIPRO_MEMORY_SHARE * free_bytes / per_input))


# Recipro-CAM's fused kernel replaces the copies' forward passes when the model's output is
# head(global average of A) to this fraction of (1 + the largest |logit|).
_FUSED_TOLERANCE = 1e-5


def _run(prog, size: Optional[Tuple[int, ...]], scalars: Mapping[str, float], tensors: Mapping[str, torch.Tensor],
         device: torch.device) -> torch.Tensor:
    """Runs `prog` on torch tensors (read in place; on a GPU by the fused CUDA kernel); the maps
    as a float32 tensor on `device`. The one place camc.torch calls a compiled program."""
    return prog(size=size, **tensors, **scalars).to(device=device, dtype=torch.float32)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per image: `(x - min) / (1e-7 + max(x - min))`, as pytorch-grad-cam's scale_cam_image."""
    dims = tuple(range(1, x.dim()))
    shape = (-1,) + (1,) * (x.dim() - 1)
    x = x - x.amin(dim=dims).reshape(shape)
    return x / (1e-7 + x.amax(dim=dims).reshape(shape))


def aggregate_layers(raw_maps: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
    """Several layers' raw maps `[n, h_l, w_l]` -> one map `[n, *size]`, as pytorch-grad-cam.

    Per layer (BaseCAM.compute_cam_per_layer, scale_cam_image with a target size): min-max to
    [0, 1] with 1e-7, bilinear resize to `size` (half-pixel centres, `align_corners=False`, no
    antialiasing: cv2.INTER_LINEAR), no second min-max. Then (aggregate_multi_layers): ReLU,
    mean over the layers, min-max again. Computed in float32 on the maps' device. `[n, d, h, w]`
    maps (3-D layers) are resized trilinearly (pytorch-grad-cam uses scipy's cubic spline
    `zoom` there, so 3-D results differ from it).
    """
    if not raw_maps:
        raise InputError("no maps to aggregate")
    size = tuple(int(s) for s in size)
    mode = {2: "bilinear", 3: "trilinear"}.get(len(size))
    if mode is None:
        raise InputError(f"size {size}: expected (H, W) or (D, H, W)")
    scaled = []
    for m in raw_maps:
        m = _minmax(m.float())
        if tuple(m.shape[1:]) != size:
            m = F.interpolate(m.unsqueeze(1), size=size, mode=mode, align_corners=False).squeeze(1)
        scaled.append(m)
    cam = torch.stack(scaled, dim=1).clamp_min(0).mean(dim=1)
    return _minmax(cam)


def _layer_names(model: nn.Module, layers: Sequence[nn.Module]) -> List[str]:
    names = {}
    for name, mod in model.named_modules():
        names.setdefault(id(mod), name or "<model>")
    return [names.get(id(l), type(l).__name__) for l in layers]


def _slice_targets(targets: TargetsLike, start: int, count: int, n: int) -> TargetsLike:
    """The targets of images start..start+count of n: a per-image list or tensor is cut; None, an
    int or one callable applies to all."""
    if isinstance(targets, torch.Tensor) and targets.dim() == 1 and targets.shape[0] == n:
        return targets[start:start + count]
    if isinstance(targets, (list, tuple)) and len(targets) == n:
        return list(targets[start:start + count])
    return targets


class CAM:
    """A camc program run on a PyTorch model: a drop-in for pytorch-grad-cam's CAM classes.

        with CAM(model, target_layers=[model.layer4[-1]], program="gradcampp") as cam:
            maps = cam(input_tensor, targets=None)   # torch.float32 [n, H, W]

    Arguments:

    - `model`: an `nn.Module`; put in eval mode, as pytorch-grad-cam does. Its output is a
      tensor whose rows the targets read (logits `[n, classes]` for int targets / None).
    - `target_layers`: a list of modules (or one module) whose outputs the CAM explains. One
      layer: the program's maps post-processed by camc at the input size. Several:
      pytorch-grad-cam's aggregation (`aggregate_layers`).
    - `program`: a stdlib method name (`"gradcam"`, `"gradcampp"`, `"xgradcam"`, `"hirescam"`,
      `"layercam"`, `"gradcam_elementwise"`, `"eigencam"`, `"eigengradcam"`, `"scorecam"`,
      `"ablationcam"`, `"fem"`, `"shapleycam"`, `"fc_cam"`), Recipro-CAM (`"reciprocam"`,
      `"reciprocam_gauss"`: the mosaic copies of the layer's output run through the rest of the
      model in the same forward pass, see _recipro.py), a `path.cam` (`path.cam:name`),
      source text, or a compiled `camc.Program`.
    - `reshape_transform`: as pytorch-grad-cam's: maps the layer's output (and gradient, and
      Hessian-vector product) to `[n, k, h, w]`, e.g. ViT/Swin tokens to a grid.
    - `batch_size`: masked / ablated copies per forward pass for Score-CAM (default 16, as
      pytorch-grad-cam's ScoreCAM) and Ablation-CAM (default 32, as its AblationCAM), model
      inputs per forward pass for Recipro-CAM (images with their h·w copies each, at least one
      image; default 256 on a CPU, on a GPU as many as half its free memory holds); also the
      attribute `cam.batch_size`, and a keyword of `__call__`.
    - `scalars`: values of the program's scalar parameters (`{"eps": 1e-5}`, FEM's `{"k": 3}`).
    - `ratio_channels_to_ablate`: only 1.0 (every channel, pytorch-grad-cam's default).
    - `learn`: a per-image parameter of the program (`w: [k]`) learned for each batch by
      Opti-CAM's optimization (camc.torch.optimize, with its defaults); `program="opticam"`
      learns `w`.

    The activations are copied in the forward hook (`detach().clone()`), before any later
    in-place op; the gradient comes from a tensor hook on the layer's output. (On the CPU
    pytorch-grad-cam keeps the output itself, so a layer followed by an in-place op — a
    BatchNorm before `ReLU(inplace=True)` — gives it the post-ReLU values; camc uses the
    layer's own output, as pytorch-grad-cam does on a GPU.) Between calls the hooks record
    nothing, and no tensor of a call is kept afterwards, except `cam.outputs`, the last model
    output (detached). Gradients are taken with `torch.autograd.grad`: the parameters' `.grad`
    are left as they were (pytorch-grad-cam's `model.zero_grad()` + `backward()` reset them).

    `close()` removes the hooks (also at the end of a `with` block and on garbage collection).
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Union[nn.Module, Sequence[nn.Module]],
        program: Union[str, "Program"] = "gradcam",
        reshape_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        *,
        batch_size: Optional[int] = None,
        scalars: Optional[Mapping[str, float]] = None,
        ratio_channels_to_ablate: float = 1.0,
        learn: Optional[str] = None,
    ) -> None:
        self._taps: List[LayerTap] = []
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(target_layers, nn.Module):
            target_layers = [target_layers]
        try:
            target_layers = list(target_layers)
        except TypeError:
            raise InputTypeError(
                f"target_layers must be a list of modules, got {type(target_layers).__name__}"
            ) from None
        if not target_layers:
            raise InputError("target_layers is empty; give at least one module of the model")
        for layer in target_layers:
            if not isinstance(layer, nn.Module):
                raise InputTypeError(
                    f"target_layers must hold torch.nn.Module objects, got a {type(layer).__name__} "
                    "(e.g. [model.layer4[-1]])"
                )
        if ratio_channels_to_ablate != 1.0:
            raise Error(
                "ratio_channels_to_ablate: camc ablates every channel (pytorch-grad-cam's default 1.0); "
                "its experimental channel selection is not supported — use program='scorecam' or a "
                "gradient method for a faster map"
            )
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model
        self.model.eval()
        self.target_layers = target_layers
        self.reshape_transform = reshape_transform
        self.batch_size = batch_size
        self.scalars: Dict[str, float] = {}
        self._gaussian = False
        # The stdlib's fused Recipro-CAM kernel, tried before the hooks (see _forward_fused).
        self._fused: Optional[Program] = None
        self.path: Optional[str] = None
        if isinstance(program, str) and program in RECIPRO_METHODS:
            self._spec: Optional[str] = program
            self._gaussian = RECIPRO_METHODS[program]
            self.program = _camc_compile(RECIPRO_PROGRAM.format(name=program))
            if len(target_layers) == 1 and reshape_transform is None:
                self._fused = _camc_compile(program)
        elif isinstance(program, str):
            self._spec = program
            self.program = _camc_compile(program)
        elif isinstance(program, Program):
            self._spec = None
            self.program = program
        else:
            hint = (
                "; the third argument is the program (pytorch-grad-cam's is reshape_transform): "
                "pass reshape_transform= by keyword"
                if callable(program)
                else ""
            )
            raise InputTypeError(
                f"program must be a stdlib name, a .cam path, source text or a camc.Program, "
                f"got {type(program).__name__}{hint}"
            )
        self._params: Dict[str, str] = dict(self.program.params)
        if learn is None and self._spec == "opticam":
            learn = "w"
        if learn is not None and learn not in self._params:
            raise InputError(f"learn: `{learn}` is not a parameter of `{self.program.name}`")
        self.learn: Optional[str] = learn
        for name, value in (scalars or {}).items():
            if name not in self._params:
                raise InputError(
                    f"scalars: `{name}` is not a parameter of `{self.program.name}` "
                    f"(it has {', '.join(self._params)})"
                )
            if self._params[name] != "[]" or name in _PROVIDED:
                raise InputError(f"scalars: `{name}` is not a settable scalar of `{self.program.name}`")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputTypeError(f"scalars: `{name}` must be a number, got {type(value).__name__}")
            self.scalars[name] = float(value)
        for name, ty in self._params.items():
            if name == learn:
                continue
            if name in _PROVIDED:
                if ty not in _PROVIDED[name]:
                    raise InputError(
                        f"program parameter `{name}: {ty}`: CAM provides `{name}` as "
                        f"{' or '.join(_PROVIDED[name])}"
                    )
            elif ty != "[]":
                raise InputError(
                    f"program parameter `{name}: {ty}` is not something CAM can compute from the model; "
                    f"it provides {', '.join(_PROVIDED)} (and scalars with a default, or set with scalars=)"
                )
        if "A" not in self._params and "recipro" not in self._params:
            raise InputError(f"program `{self.program.name}` does not read the activations `A: [k,h,w]`")
        self._needs = (set(self._params) & set(_PROVIDED)) - {learn}
        if "recipro" in self._needs and (len(target_layers) != 1 or reshape_transform is not None or "H" in self._needs):
            raise InputError("Recipro-CAM runs on one target layer whose output is [n, k, h, w] (no "
                             "reshape_transform, no Hessian-vector product)")
        self._positions = 0
        self._copy_outputs: Optional[torch.Tensor] = None
        self._layer_names = _layer_names(model, target_layers)
        self._taps = [LayerTap(layer, name) for layer, name in zip(target_layers, self._layer_names)]
        for tap in self._taps:
            tap.enabled = False
        self.outputs: Optional[torch.Tensor] = None

    # -- properties ---------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The model's device (of its first parameter or buffer; CPU for a model without)."""
        for t in self.model.parameters():
            return t.device
        for t in self.model.buffers():
            return t.device
        return torch.device("cpu")

    @property
    def closed(self) -> bool:
        """True once the hooks are removed."""
        return all(t.closed for t in self._taps)

    def __repr__(self) -> str:
        name = getattr(self, "program", None)
        name = name.name if name is not None else "?"
        state = ", closed" if self._taps and self.closed else ""
        layers = ", ".join(getattr(self, "_layer_names", []))
        try:
            device = str(self.device)
        except Exception:  # a half-built object
            device = "?"
        path = ""
        if "recipro" in getattr(self, "_needs", ()):
            chosen = getattr(self, "path", None) or ("auto" if getattr(self, "_fused", None) else "hooks")
            path = f", path={chosen!r}"
        return f"camc.torch.CAM(program={name!r}, layers=[{layers}], device={device}{path}{state})"

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Removes every hook this CAM registered and drops recorded tensors; idempotent."""
        for tap in getattr(self, "_taps", []):
            tap.close()

    def __enter__(self) -> "CAM":
        return self

    def __exit__(self, exc_type, exc_value, exc_tb) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- the call -----------------------------------------------------------------------------

    def __call__(
        self,
        input_tensor: torch.Tensor,
        targets: TargetsLike = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        *,
        batch_size: Optional[int] = None,
    ) -> torch.Tensor:
        """The CAM of each image: float32 `[n, H, W]` in [0, 1], on `input_tensor`'s device.

        - `input_tensor`: the model input `[n, C, H, W]` (moved to the model's device to run).
        - `targets`: None (each image's argmax class), an int (every image), or a list with one
          entry per image: an int class, or a callable mapping one output row to a scalar
          (`camc.torch.ClassifierOutputTarget(3)`, pytorch-grad-cam's target objects).
        - `aug_smooth`: pytorch-grad-cam's test-time augmentation: the mean of the maps of the
          input flipped horizontally or not, times 0.9, 1 and 1.1 (flipped maps flipped back).
        - `eigen_smooth`: pytorch-grad-cam's eigen smoothing for the stdlib methods (the
          weighted activations' first principal component instead of their channel sum; the
          sign fixed as stdlib/eigencam.cam documents); ignored by eigencam, eigengradcam and
          fem, as there; a `camc.Error` for other programs (write `pc1[k](...)` in them).
        - `batch_size`: overrides `cam.batch_size` for this call (Score-/Ablation-CAM).
        """
        if self.closed:
            raise Error("this CAM is closed (its hooks are removed); create a new one")
        if not isinstance(input_tensor, torch.Tensor):
            raise InputTypeError(f"input_tensor must be a torch.Tensor, got {type(input_tensor).__name__}")
        if input_tensor.dim() not in (4, 5):
            raise InputError(
                f"input_tensor has shape {list(input_tensor.shape)}; expected a batch of images "
                "[n, C, H, W] (or volumes [n, C, D, H, W])"
            )
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        prog = self._eigen_program() if eigen_smooth else self.program
        if aug_smooth:
            if input_tensor.dim() != 4:
                raise InputError("aug_smooth applies to 2-D images [n, C, H, W]")
            maps = []
            for flip in (False, True):
                for factor in (0.9, 1, 1.1):
                    x = input_tensor.flip(-1) if flip else input_tensor
                    m = self._forward(prog, x * factor, targets, batch_size)
                    maps.append(m.flip(-1) if flip else m)
            return torch.stack(maps).mean(dim=0)
        return self._forward(prog, input_tensor, targets, batch_size)

    def _eigen_program(self):
        spec = self._spec
        if spec in _EIGEN_UNCHANGED:
            return self.program
        if spec in _EIGEN_SMOOTHED:
            source = stdlib_source(spec)
            return _camc_compile(source.replace("relu(sum[k](", "relu(pc1[k](", 1))
        raise Error(
            f"eigen_smooth=True is defined for the stdlib methods ({', '.join(_EIGEN_SMOOTHED + _EIGEN_UNCHANGED)}); "
            f"for `{self.program.name}` write the smoothing into the program: pc1[k](...) in place of sum[k](...)"
        )

    def _forward(self, prog, input_tensor: torch.Tensor, targets: TargetsLike, batch_size: Optional[int]) -> torch.Tensor:
        if self.learn is not None:
            from ._optimize import learned_maps

            return learned_maps(self, prog, input_tensor, targets)[0]
        if "recipro" not in self._needs:
            return self._forward_batch(prog, input_tensor, targets, batch_size)
        if self._fused is not None:
            maps = self._forward_fused(input_tensor, targets)
            if maps is not None:
                self.path = "fused"
                return maps
        self.path = "hooks"
        # Recipro-CAM: groups of images whose copies fit `per_forward` model inputs (one image
        # and its h·w copies at least); the first group is one image, which tells h·w and, on a
        # GPU when no batch_size is given, the memory one model input takes.
        per_forward = batch_size or self.batch_size
        device = self.device
        measure = per_forward is None and device.type == "cuda"
        per_forward = per_forward or _RECIPRO_BATCH
        n = input_tensor.shape[0]
        maps, outputs = [], []
        start, per_image = 0, None
        while start < n:
            g = 1 if per_image is None else max(1, per_forward // per_image)
            part = _slice_targets(targets, start, g, n)
            if measure and per_image is None:
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            maps.append(self._forward_batch(prog, input_tensor[start:start + g], part, batch_size))
            outputs.append(self.outputs)
            if measure and per_image is None:
                peak = torch.cuda.max_memory_allocated(device) - before
                free, _ = torch.cuda.mem_get_info(device)
                per_forward = inputs_that_fit(free, peak, 1 + self._positions)
            per_image = 1 + self._positions
            start += g
        self.outputs = torch.cat(outputs)
        return torch.cat(maps)

    def _forward_fused(self, input_tensor: torch.Tensor, targets: TargetsLike) -> Optional[torch.Tensor]:
        """Recipro-CAM as one kernel over `A` and the head, when the model's output on this batch is
        a linear head on the global average of the layer (stdlib/reciprocam.cam); None when it is
        not, after one forward pass that the hook path does not reuse."""
        x = input_tensor.to(self.device)
        tap = self._taps[0]
        tap.reset()
        tap.enabled = True
        try:
            with torch.no_grad():
                outputs = self.model(x)
            tap.enabled = False
            self._check_output(outputs)
            if tap.calls != 1:
                raise _calls_error(tap)
            a = tap.activation
            if a is None or a.dim() != 4 or outputs.dim() != 2:
                return None
            _, head = find_head(self.model, a, outputs)
            if head is None:
                return None
            with torch.no_grad():
                pooled = head(a.flatten(2).mean(-1).to(head.weight.dtype))
            scale = 1.0 + float(outputs.abs().max())
            if float((pooled - outputs).abs().max()) > _FUSED_TOLERANCE * scale:
                return None
            fns = resolve_targets(targets, outputs)
            classes = target_classes(fns)
            if classes is None:
                raise InputError("Recipro-CAM scores a class per image: give int targets "
                                 "(or target objects with an int `category`)")
            bias = head.bias if head.bias is not None else torch.zeros(head.out_features, device=a.device)
            tensors = {
                "A": a,
                "head_weight": head.weight.to(a.device),
                "head_bias": bias.to(a.device),
                "target": torch.tensor(classes, dtype=torch.int64, device=a.device),
            }
            tensors = {k: _prepare(v) for k, v in tensors.items()}
            self.outputs = outputs.detach()
            size = tuple(int(s) for s in x.shape[2:])
            maps = self._call_program(self._fused, size, tensors, a.device)
        finally:
            tap.reset()
            tap.enabled = False
        return maps.to(device=input_tensor.device, dtype=torch.float32)

    def _forward_batch(self, prog, input_tensor: torch.Tensor, targets: TargetsLike, batch_size: Optional[int]) -> torch.Tensor:
        device = self.device
        x = input_tensor.to(device)
        needs = self._needs
        try:
            outputs, fns, hvps = self._capture(x, targets)
            size = tuple(int(s) for s in x.shape[2:])
            single = len(self._taps) == 1
            classes = target_classes(fns)
            maps = []
            for i, tap in enumerate(self._taps):
                raw = tap.activation
                a = self._reshape(raw, tap, "activations")
                tensors: Dict[str, torch.Tensor] = {"A": a}
                if "G" in needs:
                    tensors["G"] = self._reshape(tap.gradient, tap, "gradients")
                if "H" in needs:
                    tensors["H"] = self._reshape(hvps[i], tap, "Hessian-vector products")
                if "score" in needs:
                    bs = batch_size or self.batch_size or _SCORE_BATCH
                    tensors["score"] = score_cam_scores(self.model, tap, x, a, fns, bs)
                if "ablation" in needs:
                    bs = batch_size or self.batch_size or _ABLATION_BATCH
                    cd = 1 if self.reshape_transform is None else -1
                    if raw.shape[cd] != a.shape[1]:
                        raise InputError(
                            f"layer `{tap.name}`: Ablation-CAM ablates channels along axis {cd} of the "
                            f"layer's output {list(raw.shape)} (the last axis with a reshape_transform, "
                            f"as pytorch-grad-cam's AblationLayerVit), which does not hold the "
                            f"{a.shape[1]} channels of the reshaped activations"
                        )
                    tensors["ablation"] = ablation_scores(self.model, tap, x, raw, fns, bs, cd)
                if "logit" in needs:
                    with torch.no_grad():
                        tensors["logit"] = torch.stack([_scalar(fn(o), a.device) for fn, o in zip(fns, outputs)])
                if "recipro" in needs:
                    if classes is None:
                        raise InputError("Recipro-CAM scores a class per image: give int targets "
                                         "(or target objects with an int `category`)")
                    cls = torch.tensor(classes, dtype=torch.int64, device=a.device)
                    tensors["recipro"] = recipro_scores(self._copy_outputs, cls, a.shape[2], a.shape[3])
                    self._copy_outputs = None
                if "W" in needs or "target" in needs:
                    if classes is None:
                        raise InputError(
                            f"program parameter `{'W' if 'W' in needs else 'target'}` needs a class index "
                            "per image: give int targets (or target objects with an int `category`)"
                        )
                    if "target" in needs:
                        tensors["target"] = torch.tensor(classes, dtype=torch.int64, device=a.device)
                    if "W" in needs:
                        tensors["W"] = classifier_weights(self.model, a, outputs, classes)
                tensors = {k: _prepare(v) for k, v in tensors.items() if k in needs}
                maps.append(self._call_program(prog, size if single else None, tensors, a.device))
            result = maps[0] if single else aggregate_layers(maps, size)
        finally:
            for tap in self._taps:
                tap.reset()
                tap.enabled = False
                tap.want_grad = False
        return result.to(device=input_tensor.device, dtype=torch.float32)

    def _call_program(self, prog, size, tensors, device) -> torch.Tensor:
        try:
            return _run(prog, size, self.scalars, tensors, device)
        except InputError as e:
            text = str(e)
            if text.startswith("missing tensor `"):
                name = text.split("`")[1]
                raise InputError(
                    f"program parameter `{name}: {self._params.get(name, '?')}` has no default and is not "
                    f"something CAM computes; set it with CAM(..., scalars={{'{name}': value}})"
                ) from None
            raise

    def _capture(self, x: torch.Tensor, targets: TargetsLike):
        """Runs the model with the taps on: (outputs detached, target callables, hvps or None)."""
        needs = self._needs
        if "H" in needs:
            res = hessian_vector_product(self.model, self._taps, x, targets)
            self.outputs = res.outputs
            self._check_output(res.outputs)
            return res.outputs, res.targets, res.hvp
        want_grad = "G" in needs
        for tap in self._taps:
            tap.reset()
            tap.enabled = True
            tap.want_grad = want_grad
        recipro = "recipro" in needs
        if recipro:
            self._taps[0].extend = self._with_copies
        xin = x
        if want_grad and not x.requires_grad and not any(p.requires_grad for p in self.model.parameters()):
            xin = x.detach().requires_grad_(True)  # a frozen model: let the gradient flow from the input
        try:
            with torch.set_grad_enabled(want_grad):
                outputs = self.model(xin)
        finally:
            self._taps[0].extend = None
        self._check_output(outputs)
        if recipro:
            n = x.shape[0]
            if outputs.shape[0] != n * (1 + self._positions):
                raise InputError(
                    f"Recipro-CAM: the model returned {outputs.shape[0]} rows for {n} images and their "
                    f"{n * self._positions} copies; its layers after `{self._taps[0].name}` must treat "
                    "each row of the batch on its own"
                )
            self._copy_outputs = outputs[n:].detach()
            outputs = outputs[:n]
        for tap in self._taps:
            if tap.calls != 1:
                raise _calls_error(tap)
        for tap in self._taps:
            tap.enabled = False
        fns = resolve_targets(targets, outputs)
        if want_grad:
            loss = sum(fn(o) for fn, o in zip(fns, outputs))
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                raise InputError("the target scores do not depend on the model's parameters or input; no gradient")
            self._gradients(loss, xin)
            del loss
            for tap in self._taps:
                if tap.gradient is None:
                    raise InputError(
                        f"layer `{tap.name}`: no gradient reached it (is the target computed from this layer?)"
                    )
        outputs = outputs.detach()
        self.outputs = outputs
        return outputs, fns, None

    def _with_copies(self, output: torch.Tensor) -> torch.Tensor:
        """The layer's output followed by its Recipro-CAM mosaic copies (see _recipro.py)."""
        if output.dim() != 4:
            raise InputError(f"Recipro-CAM needs a layer output [n, k, h, w]; `{self._taps[0].name}` "
                             f"returns shape {list(output.shape)}")
        _, _, h, w = output.shape
        self._positions = h * w
        place = placements(h, w, self._gaussian, output.device, output.dtype)
        return torch.cat([output, mosaic(output.detach(), place)])

    def _gradients(self, loss: torch.Tensor, xin: torch.Tensor) -> None:
        """Sets each tap's `gradient`: d loss / d (the layer's output).

        pytorch-grad-cam calls `model.zero_grad(); loss.backward()` and reads the tensor hooks.
        The same gradients come from `torch.autograd.grad(loss, outputs)`, which stops at the
        layers (nothing below them is differentiated) and leaves the parameters' `.grad` alone.
        When an in-place op changed a layer's output after the layer returned it (a BatchNorm
        before ReLU(inplace=True)), the output tensor now holds the later value, so the hooks
        (registered on the layer's own value) are read instead, through a pass to the leaves.
        """
        taps = self._taps
        if all(t.output_intact for t in taps):
            for t in taps:
                t.want_grad = False  # the hooks would copy what autograd.grad returns anyway
            grads = torch.autograd.grad(loss, [t.output for t in taps], allow_unused=True)
            for t, g in zip(taps, grads):
                t.gradient = g
        else:
            leaves = [p for p in self.model.parameters() if p.requires_grad]
            if xin.requires_grad and xin.is_leaf:
                leaves.append(xin)
            torch.autograd.grad(loss, leaves, allow_unused=True)
        for t in taps:
            t.output = None
            t.want_grad = False

    def _check_output(self, outputs) -> None:
        if not isinstance(outputs, torch.Tensor):
            raise InputTypeError(
                f"the model returns a {type(outputs).__name__}, not a tensor; wrap it so that it returns "
                "the output tensor the targets read (e.g. the logits)"
            )
        if outputs.dim() == 0:
            raise InputError("the model returns a 0-d tensor; it must return one row per image")

    def _reshape(self, t: torch.Tensor, tap: LayerTap, what: str) -> torch.Tensor:
        if self.reshape_transform is not None:
            t = self.reshape_transform(t)
        if not isinstance(t, torch.Tensor) or t.dim() not in (4, 5):
            shape = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            hint = (
                "; pass reshape_transform= to turn it into [n, k, h, w] (ViT/Swin tokens)"
                if self.reshape_transform is None
                else "; reshape_transform must return [n, k, h, w]"
            )
            raise InputError(f"layer `{tap.name}`: {what} of shape {shape}, not [n, k, h, w]{hint}")
        return t


def _prepare(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32):
        t = t.float()
    return t.contiguous()
