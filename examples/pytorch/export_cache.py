#!/usr/bin/env python3
"""Export a camc cache (docs/cache.md) from a PyTorch model.

    python examples/pytorch/export_cache.py \
        --model torchvision.models:resnet18 --weights resnet18.pth --layer layer4 \
        --images photos/ --size 224,224 --normalize imagenet -o cache.safetensors

Runs the model on the images, records the activations `A` of one layer (forward hook) and
the gradients `G` of the target logit with respect to them (tensor hook), and writes them
with `target`, `logits`, `logit`, the classifier head (`W`, `head.weight`, `head.bias`) when
the model ends in global average pooling + linear, `image`, `boxes`, and optionally the
Score-CAM / Ablation-CAM channel scores and a second cache of perturbed images.

Full documentation: docs/exporter.md. Importable: `export(model, layer, pixels, ...)`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

PROG = "export_cache"

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as _e:  # pragma: no cover - environment problem, not a user mistake
    sys.stderr.write(
        f"{PROG}: error: {_e.name} is not installed; run scripts/install-torch.sh and use "
        ".venv-py/bin/python\n"
    )
    sys.exit(1)


class ExportError(Exception):
    """A user mistake (bad file, bad layer name, counts that disagree): exit 1 with the message."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------------------------
# Loading inputs
# --------------------------------------------------------------------------------------------


@dataclass
class Pixels:
    """Images as the exporter sees them before normalization.

    `data` is float32 [n, C, H, W]: pixel values in [0, 1] (or, with `preprocessed`, the model
    input itself). `names` are file names (folders) or None (tensor files).
    """

    data: torch.Tensor
    names: Optional[List[str]] = None
    preprocessed: bool = False
    orig_size: Optional[tuple] = None  # (H, W) before --size, when all images shared it


def _to_pixels(t, source: str, preprocessed: bool) -> torch.Tensor:
    if isinstance(t, np.ndarray):
        if t.dtype == np.uint8:
            t = torch.from_numpy(t.copy())
        else:
            t = torch.from_numpy(np.asarray(t, dtype=np.float32))
    if not isinstance(t, torch.Tensor):
        raise ExportError(f"{source}: expected a tensor, found {type(t).__name__}")
    if t.dim() == 3 and not preprocessed:
        t = t.unsqueeze(1)  # [n, H, W] grayscale
    if t.dim() not in (4, 5):
        raise ExportError(
            f"{source}: images must be [n, C, H, W] (channels first), got shape {list(t.shape)}"
        )
    if t.shape[0] == 0:
        raise ExportError(f"{source}: holds no images")
    if t.dim() == 4 and t.shape[1] not in (1, 3) and t.shape[-1] in (1, 3) and not preprocessed:
        raise ExportError(
            f"{source}: shape {list(t.shape)} looks channels-last; save images as [n, C, H, W] "
            "(e.g. x.permute(0, 3, 1, 2))"
        )
    if t.dtype == torch.uint8:
        if preprocessed:
            raise ExportError(f"{source}: --preprocessed needs a float tensor, got uint8")
        return t.float() / 255.0
    if not t.is_floating_point():
        raise ExportError(f"{source}: images must be uint8 (0..255) or float, got {t.dtype}")
    t = t.float()
    if not preprocessed:
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ExportError(
                f"{source}: float images must hold pixel values in [0, 1] (found {lo:.3g}..{hi:.3g});"
                " pass --preprocessed if the tensor already is the normalized model input"
            )
    return t


def load_images(path: str, preprocessed: bool = False, size=None) -> Pixels:
    """A folder of PNG/JPEG files (sorted by name) or a tensor file (.pt/.pth/.npy/.npz)."""
    p = Path(path)
    if not p.exists():
        raise ExportError(f"{path}: no such file or folder")
    if p.is_dir():
        if preprocessed:
            raise ExportError("--preprocessed applies to tensor files, not image folders")
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise ExportError(f"{path}: no images ({', '.join(sorted(IMAGE_EXTS))}) in this folder")
        try:
            from PIL import Image
        except ImportError:
            raise ExportError("reading image files needs Pillow (pip install Pillow)")
        arrays = []
        sizes = set()
        for f in files:
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB")
                    sizes.add((im.size[1], im.size[0]))
                    if size is not None:
                        im = im.resize((size[1], size[0]), Image.BILINEAR)
                    arrays.append(np.asarray(im, dtype=np.uint8))
            except OSError as e:
                raise ExportError(f"{f}: cannot read image ({e})")
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ExportError(
                f"{path}: images have different sizes {sorted(s[:2] for s in shapes)}; pass --size H,W"
            )
        data = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        orig = next(iter(sizes)) if len(sizes) == 1 else None
        return Pixels(data.contiguous(), [f.name for f in files], False, orig)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            t = np.load(p, allow_pickle=False)
        elif suffix == ".npz":
            z = np.load(p, allow_pickle=False)
            key = "images" if "images" in z.files else z.files[0]
            t = z[key]
        elif suffix in (".pt", ".pth"):
            t = torch.load(p, map_location="cpu", weights_only=True)
            if isinstance(t, dict):
                if "images" not in t:
                    raise ExportError(f"{path}: a dict of tensors needs an 'images' entry (has {sorted(t)})")
                t = t["images"]
        elif suffix == ".safetensors":
            from safetensors.torch import load_file

            d = load_file(str(p))
            key = "images" if "images" in d else ("image" if "image" in d else None)
            if key is None:
                raise ExportError(f"{path}: needs a tensor named 'images' (has {sorted(d)})")
            t = d[key]
        else:
            raise ExportError(
                f"{path}: unknown image source (a folder of images, or .pt/.pth/.npy/.npz/.safetensors)"
            )
    except ExportError:
        raise
    except Exception as e:  # corrupt file, pickle refused, ...
        raise ExportError(f"{path}: cannot read ({type(e).__name__}: {e})")
    t = _to_pixels(t, path, preprocessed)
    orig = tuple(t.shape[-2:]) if t.dim() == 4 else None
    if size is not None and not preprocessed and tuple(t.shape[-2:]) != tuple(size):
        if t.dim() != 4:
            raise ExportError("--size applies to 2-D images only")
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        t = t.clamp(0, 1)
    return Pixels(t.contiguous(), None, preprocessed, orig)


def load_boxes(path: str, n: int, names: Optional[List[str]], scale=(1.0, 1.0)):
    """JSON: a list (one entry per image, in image order) or a dict {file name: entry}; an entry
    is one box [x0, y0, x1, y1] or a list of boxes. Returns (boxes, box_count or None)."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror})")
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON ({e})")
    if isinstance(raw, dict) and "boxes" in raw and isinstance(raw["boxes"], (list, dict)):
        raw = raw["boxes"]
    if isinstance(raw, dict):
        if names is None:
            raise ExportError(
                f"{path}: boxes keyed by file name need an image folder; for a tensor file give a list"
            )
        missing = [nm for nm in names if nm not in raw and Path(nm).stem not in raw]
        if missing:
            raise ExportError(
                f"{path}: no boxes for {len(missing)} of {n} images (first: {missing[0]})"
            )
        extra = sorted(set(raw) - set(names) - {Path(nm).stem for nm in names})
        if extra:
            raise ExportError(f"{path}: boxes for files that are not among the images: {extra[:5]}")
        raw = [raw[nm] if nm in raw else raw[Path(nm).stem] for nm in names]
    if not isinstance(raw, list):
        raise ExportError(f"{path}: expected a list with one entry per image")
    if len(raw) != n:
        raise ExportError(f"{path}: holds boxes for {len(raw)} images, but there are {n} images")
    per_image = []
    for i, entry in enumerate(raw):
        if (
            isinstance(entry, list)
            and len(entry) == 4
            and all(isinstance(v, (int, float)) for v in entry)
        ):
            entry = [entry]
        if not isinstance(entry, list):
            raise ExportError(f"{path}: image {i}: expected [x0,y0,x1,y1] or a list of them")
        boxes = []
        for b in entry:
            if not (isinstance(b, list) and len(b) == 4 and all(isinstance(v, (int, float)) for v in b)):
                raise ExportError(f"{path}: image {i}: a box must be [x0, y0, x1, y1], got {b!r}")
            x0, y0, x1, y1 = (float(v) for v in b)
            if not (x1 > x0 and y1 > y0):
                raise ExportError(
                    f"{path}: image {i}: box {b} is empty (x1, y1 are exclusive and must exceed x0, y0)"
                )
            boxes.append([x0 * scale[1], y0 * scale[0], x1 * scale[1], y1 * scale[0]])
        per_image.append(boxes)
    m = max(len(b) for b in per_image)
    if m == 0:
        raise ExportError(f"{path}: no image has a box")
    if all(len(b) == 1 for b in per_image):
        return torch.tensor([b[0] for b in per_image], dtype=torch.float32), None
    out = torch.zeros(n, m, 4, dtype=torch.float32)
    counts = torch.zeros(n, dtype=torch.int64)
    for i, b in enumerate(per_image):
        if b:
            out[i, : len(b)] = torch.tensor(b)
        counts[i] = len(b)
    return out, counts


def parse_targets(spec: str, n: int) -> torch.Tensor:
    """An int (every image), a comma list, or a file (.json list, .npy, .txt one per line)."""
    p = Path(spec)
    vals = None
    if p.suffix.lower() in (".json", ".npy", ".txt", ".pt") or p.exists():
        if not p.exists():
            raise ExportError(f"--target {spec}: no such file")
        try:
            if p.suffix.lower() == ".json":
                vals = json.loads(p.read_text())
            elif p.suffix.lower() == ".npy":
                vals = np.load(p, allow_pickle=False).reshape(-1).tolist()
            elif p.suffix.lower() == ".pt":
                vals = torch.load(p, map_location="cpu", weights_only=True).reshape(-1).tolist()
            else:
                vals = [ln.strip() for ln in p.read_text().split() if ln.strip()]
        except Exception as e:
            raise ExportError(f"--target {spec}: cannot read ({e})")
    else:
        vals = [v for v in spec.split(",") if v.strip() != ""]
    try:
        ints = []
        for v in vals:
            fv = float(v)
            if fv != int(fv):
                raise ValueError(v)
            ints.append(int(fv))
    except (TypeError, ValueError):
        raise ExportError(f"--target {spec}: class indices must be integers")
    if len(ints) == 1 and not (p.exists() and n != 1):
        ints = ints * n
    if len(ints) != n:
        raise ExportError(f"--target {spec}: gives {len(ints)} targets for {n} images")
    return torch.tensor(ints, dtype=torch.int64)


# --------------------------------------------------------------------------------------------
# Loading the model
# --------------------------------------------------------------------------------------------


def load_model(spec: str, weights: Optional[str] = None, kwargs: Optional[dict] = None) -> nn.Module:
    """`pkg.module:callable`, `path/file.py:callable`, or a `.pt` file holding a whole module."""
    kwargs = kwargs or {}
    if ":" in spec and not os.path.exists(spec):
        mod_name, _, attr = spec.rpartition(":")
        if mod_name.endswith(".py"):
            if not os.path.exists(mod_name):
                raise ExportError(f"--model {spec}: no such file {mod_name}")
            name = "_camc_model_" + Path(mod_name).stem
            sp = importlib.util.spec_from_file_location(name, mod_name)
            module = importlib.util.module_from_spec(sp)
            sys.modules[name] = module
            sys.path.insert(0, str(Path(mod_name).resolve().parent))
            try:
                sp.loader.exec_module(module)
            finally:
                sys.path.pop(0)
        else:
            try:
                module = importlib.import_module(mod_name)
            except ImportError as e:
                raise ExportError(f"--model {spec}: cannot import {mod_name} ({e})")
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                close = difflib.get_close_matches(part, dir(obj), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ExportError(f"--model {spec}: {mod_name} has no attribute {part}{hint}")
            obj = getattr(obj, part)
        model = obj if isinstance(obj, nn.Module) else obj(**kwargs)
    elif spec.endswith((".pt", ".pth")):
        if not os.path.exists(spec):
            raise ExportError(f"--model {spec}: no such file")
        try:
            model = torch.load(spec, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ExportError(f"--model {spec}: cannot load ({type(e).__name__}: {e})")
    else:
        raise ExportError(
            f"--model {spec}: expected MODULE:CALLABLE (torchvision.models:resnet18), "
            "FILE.py:CALLABLE, or a .pt file holding a whole nn.Module"
        )
    if not isinstance(model, nn.Module):
        raise ExportError(f"--model {spec}: gave a {type(model).__name__}, not an nn.Module")
    if weights:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str) -> None:
    if not os.path.exists(path):
        raise ExportError(f"--weights {path}: no such file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
    except Exception as e:
        raise ExportError(f"--weights {path}: cannot read ({type(e).__name__}: {e})")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise ExportError(f"--weights {path}: does not fit the model: " + " ".join(m.strip() for m in msg[:4]))


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    names = [n for n, _ in model.named_modules() if n]
    try:
        return model.get_submodule(name)
    except (AttributeError, KeyError, IndexError, ValueError):
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        if not close:
            # same last component, or a prefix match
            last = name.split(".")[-1]
            close = [n for n in names if n.split(".")[-1] == last][:5] or [
                n for n in names if n.startswith(name)
            ][:5]
        hint = f"; close names: {', '.join(close)}" if close else ""
        tops = [n for n in names if "." not in n]
        raise ExportError(
            f"--layer {name}: the model has no such module{hint} (top-level modules: {', '.join(tops[:12])})"
        )


# --------------------------------------------------------------------------------------------
# Hooks
# --------------------------------------------------------------------------------------------


class LayerTap:
    """Records a copy of the layer's output and the gradient with respect to it.

    The copy (`detach().clone()`) is taken inside the forward hook, before any later in-place
    op (ReLU(inplace=True), `x += ...`) can overwrite the tensor. The gradient comes from a
    hook on the output tensor itself, registered before those in-place ops, so autograd gives
    it with respect to the value the layer produced (the one we copied).
    """

    def __init__(self, layer: nn.Module):
        self.layer = layer
        self.activation: Optional[torch.Tensor] = None
        self.gradient: Optional[torch.Tensor] = None
        self.replace: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.want_grad = False
        self.calls = 0
        self.handle = layer.register_forward_hook(self._forward)

    def _forward(self, module, inputs, output):
        if not isinstance(output, torch.Tensor):
            raise ExportError(
                f"the layer's output is a {type(output).__name__}, not a tensor; pick a module that returns one"
            )
        self.calls += 1
        if self.replace is not None:
            return self.replace(output)
        self.activation = output.detach().clone()
        if self.want_grad and output.requires_grad:
            output.register_hook(self._backward)
        return None

    def _backward(self, grad):
        self.gradient = grad.detach().clone()

    def close(self):
        self.handle.remove()


# --------------------------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------------------------


def find_head(model: nn.Module, a: torch.Tensor, logits: torch.Tensor, name: Optional[str]):
    """The linear head applied to the global average of A, if it reproduces the logits."""
    k = a.shape[1]
    pooled = a.flatten(2).mean(-1)
    scale = float(logits.abs().max()) + 1.0
    if name is not None:
        try:
            head = model.get_submodule(name)
        except (AttributeError, KeyError, IndexError, ValueError):
            raise ExportError(f"--head {name}: the model has no such module")
        if not isinstance(head, nn.Linear):
            raise ExportError(f"--head {name}: is a {type(head).__name__}, not nn.Linear")
        if head.in_features != k:
            raise ExportError(
                f"--head {name}: takes {head.in_features} features but the layer has {k} channels"
            )
        with torch.no_grad():
            diff = float((head(pooled.to(head.weight.dtype)) - logits).abs().max())
        if diff > 1e-3 * scale:
            raise ExportError(
                f"--head {name}: head(global average of A) differs from the model's logits by {diff:.3g}; "
                "the layer is not followed by global average pooling + this linear layer "
                "(choose the last feature layer, or pass --no-head)"
            )
        return name, head
    for hname, head in reversed(list(model.named_modules())):
        if isinstance(head, nn.Linear) and head.in_features == k and head.out_features == logits.shape[1]:
            with torch.no_grad():
                diff = float((head(pooled.to(head.weight.dtype)) - logits).abs().max())
            if diff <= 1e-3 * scale:
                return hname, head
    return None, None


@dataclass
class ExportOptions:
    layer: str
    batch_size: int = 32
    dtype: str = "f32"
    targets: Optional[torch.Tensor] = None
    boxes: Optional[torch.Tensor] = None
    box_count: Optional[torch.Tensor] = None
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    head: Optional[str] = None
    no_head: bool = False
    score: bool = False
    score_output: str = "logit"
    ablation: bool = False
    channel_batch: int = 64
    perturb: Optional[float] = None
    seed: int = 0
    save_image: bool = True
    perturbed_image: bool = True
    extra: Dict[str, torch.Tensor] = field(default_factory=dict)
    model_name: str = ""
    shard_size: Optional[int] = None
    metadata: Dict[str, str] = field(default_factory=dict)
    progress: bool = False


class CacheWriter:
    """Collects rows of per-image tensors and writes one file, or shards of `shard_size`."""

    def __init__(self, out: str, shard_size: Optional[int], shared: Dict[str, torch.Tensor], metadata):
        self.out = Path(out)
        self.shard_size = shard_size
        self.shared = shared
        self.metadata = metadata
        self.rows: Dict[str, List[torch.Tensor]] = {}
        self.pending = 0
        self.written: List[str] = []
        if shard_size is not None:
            if self.out.exists() and not self.out.is_dir():
                raise ExportError(f"-o {out}: with --shard-size, the output is a folder, and this is a file")
            self.out.mkdir(parents=True, exist_ok=True)
        else:
            if self.out.is_dir():
                raise ExportError(f"-o {out}: is a folder; give a .safetensors file (or use --shard-size)")
            if self.out.parent and not self.out.parent.exists():
                self.out.parent.mkdir(parents=True, exist_ok=True)

    def add(self, batch: Dict[str, torch.Tensor]):
        n = None
        for k, v in batch.items():
            self.rows.setdefault(k, []).append(v)
            n = v.shape[0]
        self.pending += n
        while self.shard_size is not None and self.pending >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, count: int):
        cat = {k: torch.cat(v) for k, v in self.rows.items()}
        now = {k: v[:count].contiguous() for k, v in cat.items()}
        rest = {k: v[count:] for k, v in cat.items()}
        self.rows = {k: [v] for k, v in rest.items()}
        self.pending -= count
        if self.shard_size is None:
            path = self.out
        else:
            path = self.out / f"cache-{len(self.written):05d}.safetensors"
        self._write(path, now)

    def _write(self, path: Path, tensors: Dict[str, torch.Tensor]):
        from safetensors.torch import save_file

        tensors = dict(tensors)
        tensors.update(self.shared)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=self.metadata)
        os.replace(tmp, path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)  # safetensors creates 0600 files
        self.written.append(str(path))

    def finish(self):
        if self.pending > 0:
            self._flush(self.pending)
        return self.written


def _progress(enabled: bool, label: str, done: int, total: int):
    if enabled:
        sys.stderr.write(f"\r{PROG}: {label} {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def export(model: nn.Module, pixels: Pixels, out: str, opts: ExportOptions) -> Dict[str, object]:
    """Writes the cache (and the perturbed cache) and returns a summary."""
    layer = resolve_layer(model, opts.layer)
    if opts.dtype not in DTYPES:
        raise ExportError(f"--dtype {opts.dtype}: expected one of {', '.join(DTYPES)}")
    if opts.batch_size < 1:
        raise ExportError("--batch-size must be at least 1")
    if opts.shard_size is not None and opts.shard_size < 1:
        raise ExportError("--shard-size must be at least 1")
    data = pixels.data
    n = data.shape[0]
    if opts.targets is not None and len(opts.targets) != n:
        raise ExportError(f"{len(opts.targets)} targets for {n} images")
    if opts.boxes is not None and opts.boxes.shape[0] != n:
        raise ExportError(f"boxes for {opts.boxes.shape[0]} images, but there are {n} images")
    reserved = {"A", "G", "target", "logits", "logit", "W", "head.weight", "head.bias", "image", "boxes",
                "box_count", "score", "ablation"}
    for name, t in opts.extra.items():
        if name in reserved:
            raise ExportError(f"--extra {name}: the exporter writes a tensor of that name itself")
        if t.dim() == 0 or t.shape[0] != n:
            raise ExportError(f"--extra {name}: has shape {list(t.shape)}; its leading axis must be the {n} images")
    model.eval()
    pdtype = next((p.dtype for p in model.parameters()), torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    store = DTYPES[opts.dtype]
    nchan = data.shape[1]
    if not pixels.preprocessed:
        if len(opts.mean) != nchan or len(opts.std) != nchan:
            if len(opts.mean) == 3 and len(opts.std) == 3 and nchan == 1:
                pass
            else:
                raise ExportError(
                    f"--mean/--std have {len(opts.mean)}/{len(opts.std)} values but the images have {nchan} channels"
                )
        if any(s == 0 for s in opts.std):
            raise ExportError("--std: values must be non-zero")
    mean = torch.tensor(opts.mean, dtype=torch.float32).view(1, -1, *([1] * (data.dim() - 2)))
    std = torch.tensor(opts.std, dtype=torch.float32).view(1, -1, *([1] * (data.dim() - 2)))

    def model_input(px: torch.Tensor) -> torch.Tensor:
        x = px if pixels.preprocessed else (px - mean) / std
        return x.to(device=device, dtype=pdtype)

    def as_image(px: torch.Tensor) -> Optional[torch.Tensor]:
        if px.dim() != 4:
            return None
        if pixels.preprocessed:  # a picture for overlays only: per-image min-max
            lo = px.flatten(1).min(1)[0].view(-1, 1, 1, 1)
            hi = px.flatten(1).max(1)[0].view(-1, 1, 1, 1)
            px = (px - lo) / (hi - lo + 1e-12)
            if px.shape[1] != 3:
                px = px.mean(1, keepdim=True)
        if px.shape[1] == 1:
            px = px.expand(-1, 3, -1, -1)
        if px.shape[1] != 3:
            return None
        return (px.clamp(0, 1) * 255).round().to(torch.uint8)

    tap = LayerTap(layer)
    saved_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(opts.seed)
    head_name = None
    writers: List[CacheWriter] = []
    first = True
    summary: Dict[str, object] = {}
    try:

        def run_batch(px: torch.Tensor, tgt: Optional[torch.Tensor]):
            x = model_input(px).requires_grad_(True)
            tap.activation, tap.gradient = None, None
            tap.want_grad, tap.calls = True, 0
            with torch.enable_grad():
                logits = model(x)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise ExportError(
                        "the model's output must be a [batch, classes] tensor of logits, got "
                        + (str(list(logits.shape)) if isinstance(logits, torch.Tensor) else type(logits).__name__)
                    )
                if tap.calls == 0:
                    raise ExportError(f"--layer {opts.layer}: the module never ran in the forward pass")
                if tap.calls > 1:
                    raise ExportError(
                        f"--layer {opts.layer}: the module ran {tap.calls} times in one forward pass "
                        "(a shared module); pick a module that runs once"
                    )
                if tgt is None:
                    tgt = logits.detach().argmax(1).cpu()
                C = logits.shape[1]
                bad = [int(t) for t in tgt if not 0 <= int(t) < C]
                if bad:
                    raise ExportError(f"target class {bad[0]} out of range: the model has {C} classes")
                chosen = logits.gather(1, tgt.to(logits.device).view(-1, 1)).squeeze(1)
                chosen.sum().backward()
            tap.want_grad = False
            if tap.gradient is None:
                raise ExportError(
                    f"--layer {opts.layer}: no gradient reached the layer (is the target logit computed from it?)"
                )
            return tap.activation, tap.gradient, logits.detach(), chosen.detach(), tgt

        def forward_scores(x: torch.Tensor, tgt: int, replace=None) -> torch.Tensor:
            tap.replace = replace
            try:
                with torch.no_grad():
                    out = model(x)
            finally:
                tap.replace = None
            if opts.score_output == "prob" and replace is None:
                out = out.float().softmax(1)
            return out[:, tgt].float().cpu()

        def score_cam(x1: torch.Tensor, a1: torch.Tensor, tgt: int) -> torch.Tensor:
            # pytorch-grad-cam score_cam.py: UpsamplingBilinear2d (align_corners=True) to the
            # input size, per-channel min-max with 1e-8, input * mask, target of the output.
            up = F.interpolate(a1.unsqueeze(0).float(), size=x1.shape[-2:], mode="bilinear", align_corners=True)[0]
            flat = up.flatten(1)
            lo = flat.min(1)[0].view(-1, 1, 1)
            hi = flat.max(1)[0].view(-1, 1, 1)
            masks = (up - lo) / (hi - lo + 1e-8)
            res = []
            for c0 in range(0, masks.shape[0], opts.channel_batch):
                m = masks[c0 : c0 + opts.channel_batch]
                res.append(forward_scores((x1.unsqueeze(0).float() * m.unsqueeze(1)).to(pdtype), tgt))
            return torch.cat(res)

        def ablation_cam(x1: torch.Tensor, a1: torch.Tensor, tgt: int) -> torch.Tensor:
            # pytorch-grad-cam ablation_cam.py AblationLayer: channel set to 0, or to
            # min(activations) - 1e7 when the minimum is not 0; the target of the output.
            amin = float(a1.min())
            value = 0.0 if amin == 0 else amin - 1e7
            res = []
            K = a1.shape[0]
            for c0 in range(0, K, opts.channel_batch):
                idx = list(range(c0, min(K, c0 + opts.channel_batch)))
                abl = a1.unsqueeze(0).repeat(len(idx), *([1] * a1.dim())).to(pdtype)
                for j, c in enumerate(idx):
                    abl[j, c] = value

                def replace(output, abl=abl):
                    if output.shape[1:] != abl.shape[1:]:
                        raise ExportError("the layer's output shape changed between passes")
                    return abl.to(output.device, output.dtype)

                xs = x1.unsqueeze(0).expand(len(idx), *x1.shape).contiguous()
                res.append(forward_scores(xs, tgt, replace))
            return torch.cat(res)

        total_passes = 2 if opts.perturb is not None else 1
        for pass_no in range(total_passes):
            perturbed = pass_no == 1
            writer = None
            targets_seen: List[torch.Tensor] = []
            for b0 in range(0, n, opts.batch_size):
                px = data[b0 : b0 + opts.batch_size]
                if perturbed:
                    noise = torch.randn(px.shape, generator=gen) * opts.perturb
                    px = px + noise
                    if not pixels.preprocessed:
                        px = px.clamp(0, 1)
                tgt = None
                if opts.targets is not None:
                    tgt = opts.targets[b0 : b0 + opts.batch_size]
                elif perturbed:
                    tgt = clean_targets[b0 : b0 + opts.batch_size]
                a, g, logits, chosen, tgt = run_batch(px, tgt)
                if a.dim() not in (4, 5):
                    raise ExportError(
                        f"--layer {opts.layer}: output has shape {list(a.shape)}; a CAM layer gives [batch, k, h, w] "
                        "(or [batch, k, d, h, w])"
                    )
                targets_seen.append(tgt.cpu())
                if first:
                    first = False
                    shared = {}
                    if not opts.no_head:
                        head_name, head = find_head(model, a.float(), logits.float(), opts.head)
                        if head is not None:
                            shared["head.weight"] = head.weight.detach().float().cpu().clone()
                            if head.bias is not None:
                                shared["head.bias"] = head.bias.detach().float().cpu().clone()
                            else:
                                shared["head.bias"] = torch.zeros(head.out_features)
                    in_size = tuple(data.shape[2:])
                    meta = {
                        "image_size": ",".join(str(s) for s in in_size),
                        "model": opts.model_name or type(model).__name__,
                        "layer": opts.layer,
                        "exporter": "camc examples/pytorch/export_cache.py",
                        "dtype": opts.dtype,
                        "target": "given" if opts.targets is not None else "argmax",
                    }
                    if head_name:
                        meta["head"] = head_name
                    if opts.score:
                        meta["score"] = f"pytorch-grad-cam ScoreCAM: {opts.score_output} of the target on input * normalized upsampled A_k"
                    if opts.ablation:
                        meta["ablation"] = "pytorch-grad-cam AblationCAM: target logit with channel k set to 0 (min(A)-1e7 if min(A) != 0)"
                    meta.update(opts.metadata)
                    shared_meta = meta
                    shared_tensors = shared
                row = {
                    "A": a.to(store).cpu(),
                    "G": g.to(store).cpu(),
                    "target": tgt.to(torch.int64).cpu(),
                    "logits": logits.float().cpu(),
                    "logit": chosen.float().cpu(),
                }
                if "head.weight" in shared_tensors:
                    row["W"] = shared_tensors["head.weight"][row["target"]]
                if opts.save_image and (opts.perturbed_image or not perturbed):
                    img = as_image(px)
                    if img is not None:
                        row["image"] = img
                if opts.boxes is not None:
                    row["boxes"] = opts.boxes[b0 : b0 + opts.batch_size]
                    if opts.box_count is not None:
                        row["box_count"] = opts.box_count[b0 : b0 + opts.batch_size]
                for name, t in opts.extra.items():
                    row[name] = t[b0 : b0 + opts.batch_size]
                if not perturbed and (opts.score or opts.ablation):
                    xin = model_input(px)
                    if a.dim() != 4:
                        raise ExportError("--score/--ablation support 2-D layers ([k, h, w]) only")
                    sc, ab = [], []
                    for i in range(a.shape[0]):
                        t_i = int(tgt[i])
                        if opts.score:
                            sc.append(score_cam(xin[i], a[i], t_i))
                        if opts.ablation:
                            ab.append(ablation_cam(xin[i], a[i], t_i))
                    if opts.score:
                        row["score"] = torch.stack(sc)
                    if opts.ablation:
                        row["ablation"] = torch.stack(ab)
                if writer is None:
                    meta = dict(shared_meta)
                    if perturbed:
                        meta["perturbation"] = f"gaussian noise sigma={opts.perturb} (pixel units, seed {opts.seed})"
                        meta["target"] = "as in the clean cache"
                        meta.pop("score", None)
                        meta.pop("ablation", None)
                    target_out = out if not perturbed else perturbed_path(out, opts.shard_size)
                    writer = CacheWriter(target_out, opts.shard_size, shared_tensors, meta)
                    writers.append(writer)
                writer.add(row)
                _progress(opts.progress, "perturbed" if perturbed else "images", min(n, b0 + opts.batch_size), n)
            if not perturbed:
                clean_targets = torch.cat(targets_seen)
            files = writer.finish()
            summary["perturbed_files" if perturbed else "files"] = files
        summary["head"] = head_name
        summary["n"] = n
        return summary
    finally:
        tap.close()
        for p, r in zip(model.parameters(), saved_grad):
            p.requires_grad_(r)


def load_extras(specs: List[str]) -> Dict[str, torch.Tensor]:
    out = {}
    for spec in specs:
        name, eq, path = spec.partition("=")
        if not eq or not name or not path:
            raise ExportError(f"--extra {spec}: expected NAME=FILE")
        if name in out:
            raise ExportError(f"--extra {name}: given twice")
        if not os.path.exists(path):
            raise ExportError(f"--extra {spec}: no such file {path}")
        try:
            if path.endswith(".npy"):
                t = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                t = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ExportError(f"--extra {spec}: cannot read ({type(e).__name__}: {e})")
        if not isinstance(t, torch.Tensor):
            raise ExportError(f"--extra {spec}: expected a tensor")
        if t.dtype == torch.float64:
            t = t.float()
        out[name] = t.contiguous()
    return out


def perturbed_path(out: str, shard_size: Optional[int]) -> str:
    p = Path(out)
    if shard_size is not None:
        return str(p.with_name(p.name + "_perturbed"))
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return str(p.with_name(stem + "_perturbed.safetensors"))


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _floats(s: str, flag: str) -> List[float]:
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise ExportError(f"{flag} {s}: expected comma-separated numbers")


def _size(s: str):
    try:
        h, w = (int(v) for v in s.split(","))
        if h <= 0 or w <= 0:
            raise ValueError
        return (h, w)
    except ValueError:
        raise ExportError(f"--size {s}: expected H,W (two positive integers)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="export_cache.py",
        description="Export a camc cache (activations, gradients, targets, ...) from a PyTorch model.",
        epilog="Documentation: docs/exporter.md",
    )
    ap.add_argument("--model", required=True, help="MODULE:CALLABLE, FILE.py:CALLABLE, or a .pt file holding a whole module")
    ap.add_argument("--model-name", help="the `model` metadata (default: the --model argument)")
    ap.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for the model callable")
    ap.add_argument("--weights", help="state dict: .safetensors or .pt/.pth")
    ap.add_argument("--layer", required=True, help="module name of the CAM layer (model.get_submodule)")
    ap.add_argument("--images", required=True, help="folder of PNG/JPEG, or a tensor file .pt/.npy/.npz/.safetensors [n,C,H,W]")
    ap.add_argument("--preprocessed", action="store_true", help="the tensor file already is the model input (no resize, no normalization)")
    ap.add_argument("--size", help="H,W: resize images to the network input size")
    ap.add_argument("--normalize", choices=["none", "imagenet"], default="none", help="pixel normalization preset (default none)")
    ap.add_argument("--mean", help="per-channel mean, comma-separated (overrides --normalize)")
    ap.add_argument("--std", help="per-channel std, comma-separated (overrides --normalize)")
    ap.add_argument("--target", help="class to explain: one int for all, a comma list, or a .json/.npy/.txt file (default: argmax)")
    ap.add_argument("--boxes", help="JSON boxes: per image [x0,y0,x1,y1] or a list of them (x1, y1 exclusive)")
    ap.add_argument("-o", "--out", required=True, help="output .safetensors (a folder with --shard-size)")
    ap.add_argument("--dtype", choices=list(DTYPES), default="f32", help="storage type of A and G (default f32)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward/backward pass (default 32)")
    ap.add_argument("--shard-size", type=int, help="images per shard: writes OUT/cache-00000.safetensors, ...")
    ap.add_argument("--head", help="name of the linear head after global average pooling (default: detected)")
    ap.add_argument("--no-head", action="store_true", help="do not write W / head.weight / head.bias")
    ap.add_argument("--score", action="store_true", help="Score-CAM channel scores (k forward passes per image)")
    ap.add_argument("--score-output", choices=["logit", "prob"], default="logit", help="what --score records (default logit, as pytorch-grad-cam)")
    ap.add_argument("--ablation", action="store_true", help="Ablation-CAM channel scores (k forward passes per image)")
    ap.add_argument("--channel-batch", type=int, default=64, help="masked/ablated copies per forward pass (default 64)")
    ap.add_argument("--perturb", type=float, metavar="SIGMA", help="also write OUT_perturbed: images + gaussian noise of std SIGMA (pixel units 0..1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the perturbation noise (default 0)")
    ap.add_argument("--no-perturbed-image", action="store_true", help="do not store the noisy images in the perturbed cache")
    ap.add_argument("--no-image", action="store_true", help="do not store the uint8 images")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=FILE",
                    help="also store a per-image tensor (.npy/.pt, leading axis n) under NAME; repeatable")
    ap.add_argument("--device", default="cpu", help="torch device (default cpu)")
    ap.add_argument("--quiet", action="store_true", help="no progress or summary")
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        if args.batch_size < 1:
            raise ExportError("--batch-size must be at least 1")
        if args.channel_batch < 1:
            raise ExportError("--channel-batch must be at least 1")
        if args.perturb is not None and not (args.perturb > 0 and math.isfinite(args.perturb)):
            raise ExportError("--perturb: SIGMA must be a positive number")
        try:
            kwargs = json.loads(args.model_kwargs)
            if not isinstance(kwargs, dict):
                raise ValueError
        except ValueError:
            raise ExportError(f"--model-kwargs {args.model_kwargs}: expected a JSON object")
        size = _size(args.size) if args.size else None
        if args.preprocessed and (args.size or args.mean or args.std or args.normalize != "none"):
            raise ExportError("--preprocessed excludes --size, --mean, --std and --normalize")
        model = load_model(args.model, args.weights, kwargs)
        try:
            model = model.to(args.device)
        except (RuntimeError, AssertionError) as e:
            raise ExportError(f"--device {args.device}: {e}")
        resolve_layer(model, args.layer)  # fail fast, before reading images
        pixels = load_images(args.images, args.preprocessed, size)
        n = pixels.data.shape[0]
        mean, std = ((0.0,) * 3, (1.0,) * 3) if args.normalize == "none" else (IMAGENET_MEAN, IMAGENET_STD)
        if args.mean:
            mean = _floats(args.mean, "--mean")
        if args.std:
            std = _floats(args.std, "--std")
        if pixels.data.shape[1] == 1 and len(mean) == 3 and not args.mean:
            mean, std = mean[:1], std[:1]
        targets = parse_targets(args.target, n) if args.target else None
        boxes = box_count = None
        if args.boxes:
            scale = (1.0, 1.0)
            if size is not None:
                if pixels.orig_size is None:
                    raise ExportError(
                        "--boxes with --size: the images have different sizes, so one box scale does not fit; "
                        "resize the images (and their boxes) beforehand"
                    )
                scale = (size[0] / pixels.orig_size[0], size[1] / pixels.orig_size[1])
            boxes, box_count = load_boxes(args.boxes, n, pixels.names, scale)
        opts = ExportOptions(
            layer=args.layer,
            batch_size=args.batch_size,
            dtype=args.dtype,
            targets=targets,
            boxes=boxes,
            box_count=box_count,
            mean=mean,
            std=std,
            head=args.head,
            no_head=args.no_head,
            score=args.score,
            score_output=args.score_output,
            ablation=args.ablation,
            channel_batch=args.channel_batch,
            perturb=args.perturb,
            seed=args.seed,
            save_image=not args.no_image,
            perturbed_image=not args.no_perturbed_image,
            extra=load_extras(args.extra),
            model_name=args.model_name or args.model,
            shard_size=args.shard_size,
            progress=sys.stderr.isatty() and not args.quiet,
        )
        summary = export(model, pixels, args.out, opts)
    except ExportError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    if not args.quiet:
        files = summary["files"]
        print(f"{PROG}: {summary['n']} images -> {files[0] if len(files) == 1 else f'{len(files)} shards in {args.out}'}"
              + (f" (head: {summary['head']})" if summary["head"] else " (no GAP+linear head found: no W/head.*)"))
        if "perturbed_files" in summary:
            pf = summary["perturbed_files"]
            print(f"{PROG}: perturbed cache -> {pf[0] if len(pf) == 1 else f'{len(pf)} shards'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
