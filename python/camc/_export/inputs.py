"""The exporter's inputs besides the model: images, boxes, targets and --extra tensors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .base import IMAGE_EXTS, ExportError


@dataclass
class Pixels:
    """Images as the exporter sees them before normalization.

    `data` is float32 [n, C, H, W]: pixel values in [0, 1] (or, with `preprocessed`, the model
    input itself). `names` are file names (folders) or None (tensors).
    """

    data: torch.Tensor
    names: Optional[List[str]] = None
    preprocessed: bool = False
    orig_size: Optional[tuple] = None  # (H, W) before --size, when all images shared it


def to_pixels(t, source: str, preprocessed: bool) -> torch.Tensor:
    """A uint8 / float tensor or array [n, C, H, W] ([n, H, W] grayscale) as float pixels."""
    if isinstance(t, np.ndarray):
        if t.dtype == np.uint8:
            t = torch.from_numpy(t.copy())
        else:
            t = torch.from_numpy(np.asarray(t, dtype=np.float32))
    if not isinstance(t, torch.Tensor):
        raise ExportError(f"{source}: expected a tensor, found {type(t).__name__}")
    t = t.detach().cpu()
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


def pixels_from_tensor(t, source: str, preprocessed: bool = False, size=None) -> Pixels:
    t = to_pixels(t, source, preprocessed)
    orig = tuple(t.shape[-2:]) if t.dim() == 4 else None
    if size is not None and not preprocessed and tuple(t.shape[-2:]) != tuple(size):
        if t.dim() != 4:
            raise ExportError("--size applies to 2-D images only")
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        t = t.clamp(0, 1)
    return Pixels(t.contiguous(), None, preprocessed, orig)


def load_images(path: Union[str, os.PathLike], preprocessed: bool = False, size=None) -> Pixels:
    """A folder of PNG/JPEG files (sorted by name) or a tensor file (.pt/.pth/.npy/.npz/.safetensors)."""
    path = str(path)
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
    return pixels_from_tensor(t, path, preprocessed, size)


Boxes = Tuple[torch.Tensor, Optional[torch.Tensor]]


def load_boxes(path, n: int, names: Optional[List[str]], scale=(1.0, 1.0)) -> Boxes:
    """A JSON file of boxes (see `parse_boxes`)."""
    path = str(path)
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise ExportError(f"{path}: cannot read ({e.strerror})")
    except json.JSONDecodeError as e:
        raise ExportError(f"{path}: not valid JSON ({e})")
    return parse_boxes(raw, path, n, names, scale)


def parse_boxes(raw, source: str, n: int, names: Optional[List[str]], scale=(1.0, 1.0)) -> Boxes:
    """A list (one entry per image, in image order) or a dict {file name: entry}; an entry is
    one box [x0, y0, x1, y1] or a list of boxes. Returns (boxes, box_count or None)."""
    path = source
    if isinstance(raw, (torch.Tensor, np.ndarray)):
        raw = np.asarray(raw).tolist()
    if isinstance(raw, tuple):
        raw = list(raw)
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
        if isinstance(entry, tuple):
            entry = list(entry)
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
            if isinstance(b, tuple):
                b = list(b)
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
    """An int (every image), a comma list, or a file (.json list, .npy, .txt one per line, .pt)."""
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
    ints = _ints(vals, spec)
    if len(ints) == 1 and not (p.exists() and n != 1):
        ints = ints * n
    if len(ints) != n:
        raise ExportError(f"--target {spec}: gives {len(ints)} targets for {n} images")
    return torch.tensor(ints, dtype=torch.int64)


def targets_from(value, n: int) -> Optional[torch.Tensor]:
    """`targets=` of the Python function: None (argmax), an int (every image), a sequence /
    tensor / array of n ints, or a string as the command line's --target."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        return parse_targets(str(value), n)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        value = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value).reshape(-1).tolist()
    if isinstance(value, (int, np.integer)):
        value = [int(value)] * n
    shown = str(value) if len(str(value)) < 40 else str(value)[:37] + "..."
    ints = _ints(list(value), shown)
    if len(ints) != n:
        raise ExportError(f"--target {shown}: gives {len(ints)} targets for {n} images")
    return torch.tensor(ints, dtype=torch.int64)


def _ints(vals: Sequence, spec: str) -> List[int]:
    try:
        ints = []
        for v in vals:
            fv = float(v)
            if fv != int(fv):
                raise ValueError(v)
            ints.append(int(fv))
    except (TypeError, ValueError):
        raise ExportError(f"--target {spec}: class indices must be integers")
    return ints


def load_extras(specs) -> Dict[str, torch.Tensor]:
    """--extra NAME=FILE (repeatable), or for the Python function a dict {name: tensor/array}."""
    out: Dict[str, torch.Tensor] = {}
    if isinstance(specs, dict):
        for name, t in specs.items():
            if isinstance(t, np.ndarray):
                t = torch.from_numpy(np.ascontiguousarray(t))
            if not isinstance(t, torch.Tensor):
                raise ExportError(f"--extra {name}: expected a tensor, found {type(t).__name__}")
            out[str(name)] = _extra_tensor(t)
        return out
    for spec in specs:
        name, eq, path = str(spec).partition("=")
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
        out[name] = _extra_tensor(t)
    return out


def _extra_tensor(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu()
    if t.dtype == torch.float64:
        t = t.float()
    return t.contiguous()
