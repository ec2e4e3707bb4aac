"""Export camc caches (docs/cache.md) from a PyTorch model: `camc.export(...)` and `python -m camc.export`.

    python -m camc.export \\
        --model torchvision.models:resnet18 --weights resnet18.pth --layer layer4 \\
        --images photos/ --size 224,224 --normalize imagenet -o cache.safetensors

    import camc.export
    camc.export(model, ["layer4"], images, "cache.safetensors", normalize="imagenet")

Runs the model on the images, records the activations `A` of each target layer (forward hook)
and the gradients `G` of the target logit with respect to them, and writes one cache per layer
with `target`, `logits`, `logit`, the classifier head (`W`, `head.weight`, `head.bias`) when the
layer is followed by global average pooling + linear, `image`, `boxes`, and optionally the
Score-CAM / Ablation-CAM channel scores, ShapleyCAM's Hessian-vector product `H`, and a second
cache of perturbed images. Full documentation: docs/exporter.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import types
from typing import Dict, Optional, Sequence, Union

try:
    import numpy  # noqa: F401
    import safetensors  # noqa: F401
    import torch  # noqa: F401
    from torch import nn
except ImportError as _e:  # pragma: no cover - environment problem, not a user mistake
    if __name__ == "__main__":
        sys.stderr.write(f"camc.export: error: {_e.name} is not installed (camc.export needs torch, numpy and safetensors)\n")
        sys.exit(1)
    raise

from ._errors import Error
from ._export.base import DTYPES, IMAGENET_MEAN, IMAGENET_STD, PROG, ExportError

from ._export.inputs import Pixels, load_boxes, load_extras, load_images, parse_boxes, pixels_from_tensor, targets_from
from ._export.model import load_model, load_weights, resolve_layers, split_layer_names
from ._export.run import ExportOptions, export_pixels
from ._export.writer import layer_outputs

__all__ = ["export", "main", "ExportError", "load_model", "load_weights", "IMAGENET_MEAN", "IMAGENET_STD"]


def export(
    model: nn.Module,
    target_layers,
    images,
    out: Union[str, os.PathLike],
    *,
    target=None,
    boxes=None,
    preprocessed: bool = False,
    size: Optional[Sequence[int]] = None,
    normalize: str = "none",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    dtype: str = "f32",
    batch_size: int = 32,
    shard_size: Optional[int] = None,
    head: Optional[str] = None,
    no_head: bool = False,
    score: bool = False,
    score_output: str = "logit",
    ablation: bool = False,
    hvp: bool = False,
    recipro: bool = False,
    channel_batch: int = 64,
    perturb: Optional[float] = None,
    seed: int = 0,
    no_perturbed_image: bool = False,
    no_image: bool = False,
    extra=None,
    device=None,
    model_name: Optional[str] = None,
    metadata: Optional[Dict[str, str]] = None,
    progress: bool = False,
) -> Dict[str, object]:
    """Write one camc cache per target layer; returns a summary (see docs/exporter.md).

    model: an `nn.Module` returning `[batch, classes]` logits (put in eval mode for the export,
      its training mode and parameters' `requires_grad` restored afterwards).
    target_layers: a module name (`"layer4"`, comma lists allowed), a module, or a list of them.
    images: a tensor/array `[n, C, H, W]` (uint8 0..255, or float pixels in [0, 1]; with
      `preprocessed=True` the model input itself), or a path as `--images` takes.
    out: one layer: the `.safetensors` file (a folder with `shard_size`). Several layers: a
      folder (`out/LAYER.safetensors`), or a stem ending in `.safetensors`
      (`cache.safetensors` -> `cache.LAYER.safetensors`).
    The keyword options are the command line's options (`--no-head` is `no_head=True`, ...);
    `target` takes an int, a sequence/tensor of n ints or a `--target` string; `boxes` a JSON
    path or the same structure as a Python list/dict (or an [n, 4] tensor); `extra` a dict
    {name: tensor} or a list of "NAME=FILE". `device` moves the model there (default: leave it).

    Raises `camc.export.ExportError` (a `camc.InputError`) on a mistake, before writing anything.
    Returns {"n": images, "files": [...], "perturbed_files": [...] (with perturb),
    "layers": {name: {"files": [...], "perturbed_files": [...], "head": name or None}}}.
    """
    if not isinstance(model, nn.Module):
        raise ExportError(f"model: expected an nn.Module, got {type(model).__name__}")
    if batch_size < 1:
        raise ExportError("--batch-size must be at least 1")
    if channel_batch < 1:
        raise ExportError("--channel-batch must be at least 1")
    if perturb is not None and not (perturb > 0 and math.isfinite(perturb)):
        raise ExportError("--perturb: SIGMA must be a positive number")
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    if normalize not in ("none", "imagenet"):
        raise ExportError(f"--normalize {normalize}: expected none or imagenet")
    if size is not None:
        try:
            size = tuple(int(s) for s in size)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ExportError(f"--size {size}: expected H,W (two positive integers)")
    if preprocessed and (size or mean or std or normalize != "none"):
        raise ExportError("--preprocessed excludes --size, --mean, --std and --normalize")
    if device is not None:
        try:
            model = model.to(device)
        except (RuntimeError, AssertionError) as e:
            raise ExportError(f"--device {device}: {e}")
    layers = resolve_layers(model, target_layers)  # fail fast, before reading images
    names = [name for name, _ in layers]
    outs = layer_outputs(str(out), names, shard_size)
    if isinstance(images, Pixels):
        pixels = images
    elif isinstance(images, (str, os.PathLike)):
        pixels = load_images(images, preprocessed, size)
    else:
        pixels = pixels_from_tensor(images, "images", preprocessed, size)
    n = pixels.data.shape[0]
    mean_, std_ = ((0.0,) * 3, (1.0,) * 3) if normalize == "none" else (IMAGENET_MEAN, IMAGENET_STD)
    if mean is not None:
        mean_ = tuple(float(v) for v in mean)
    if std is not None:
        std_ = tuple(float(v) for v in std)
    if pixels.data.shape[1] == 1 and len(mean_) == 3 and mean is None:
        mean_, std_ = mean_[:1], std_[:1]
    targets = targets_from(target, n)
    box_t = box_count = None
    if boxes is not None:
        scale = (1.0, 1.0)
        if size is not None:
            if pixels.orig_size is None:
                raise ExportError(
                    "--boxes with --size: the images have different sizes, so one box scale does not fit; "
                    "resize the images (and their boxes) beforehand"
                )
            scale = (size[0] / pixels.orig_size[0], size[1] / pixels.orig_size[1])
        if isinstance(boxes, (str, os.PathLike)):
            box_t, box_count = load_boxes(boxes, n, pixels.names, scale)
        else:
            box_t, box_count = parse_boxes(boxes, "boxes", n, pixels.names, scale)
    opts = ExportOptions(
        batch_size=batch_size,
        dtype=dtype,
        targets=targets,
        boxes=box_t,
        box_count=box_count,
        mean=mean_,
        std=std_,
        head=head,
        no_head=no_head,
        score=score,
        score_output=score_output,
        ablation=ablation,
        hvp=hvp,
        recipro=recipro,
        channel_batch=channel_batch,
        perturb=perturb,
        seed=seed,
        save_image=not no_image,
        perturbed_image=not no_perturbed_image,
        extra=load_extras(extra or {}),
        model_name=model_name or type(model).__name__,
        shard_size=shard_size,
        metadata=dict(metadata or {}),
        progress=progress,
    )
    try:
        return export_pixels(model, pixels, layers, outs, opts)
    except ExportError:
        raise
    except Error as e:  # camc.torch's checks (a layer returning a tuple, ...): one error type here
        raise ExportError(str(e)) from e


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _floats(s: str, flag: str):
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
        prog="python -m camc.export",
        description="Export camc caches (activations, gradients, targets, ...) from a PyTorch model, one per layer.",
        epilog="Documentation: docs/exporter.md",
    )
    ap.add_argument("--model", required=True, help="MODULE:CALLABLE, FILE.py:CALLABLE, or a .pt file holding a whole module")
    ap.add_argument("--model-name", help="the `model` metadata (default: the --model argument)")
    ap.add_argument("--model-kwargs", default="{}", help="JSON keyword arguments for the model callable")
    ap.add_argument("--model-seed", type=int, metavar="N",
                    help="torch.manual_seed(N) right before the model is built (models with random weights)")
    ap.add_argument("--weights", help="state dict: .safetensors or .pt/.pth")
    ap.add_argument("--layer", required=True, action="append",
                    help="module name of a CAM layer (model.get_submodule); repeatable or a comma list: one cache per layer")
    ap.add_argument("--images", required=True, help="folder of PNG/JPEG, or a tensor file .pt/.npy/.npz/.safetensors [n,C,H,W]")
    ap.add_argument("--preprocessed", action="store_true", help="the tensor file already is the model input (no resize, no normalization)")
    ap.add_argument("--size", help="H,W: resize images to the network input size")
    ap.add_argument("--normalize", choices=["none", "imagenet"], default="none", help="pixel normalization preset (default none)")
    ap.add_argument("--mean", help="per-channel mean, comma-separated (overrides --normalize)")
    ap.add_argument("--std", help="per-channel std, comma-separated (overrides --normalize)")
    ap.add_argument("--target", help="class to explain: one int for all, a comma list, or a .json/.npy/.txt file (default: argmax)")
    ap.add_argument("--boxes", help="JSON boxes: per image [x0,y0,x1,y1] or a list of them (x1, y1 exclusive)")
    ap.add_argument("-o", "--out", required=True,
                    help="output .safetensors (a folder with --shard-size); several layers: a folder, or a stem X.safetensors")
    ap.add_argument("--dtype", choices=list(DTYPES), default="f32", help="storage type of A, G and H (default f32)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per forward/backward pass (default 32)")
    ap.add_argument("--shard-size", type=int, help="images per shard: writes OUT/cache-00000.safetensors, ...")
    ap.add_argument("--head", help="name of the linear head after global average pooling (default: detected)")
    ap.add_argument("--no-head", action="store_true", help="do not write W / head.weight / head.bias")
    ap.add_argument("--score", action="store_true", help="Score-CAM channel scores (k forward passes per image)")
    ap.add_argument("--score-output", choices=["logit", "prob"], default="logit", help="what --score records (default logit, as pytorch-grad-cam)")
    ap.add_argument("--ablation", action="store_true", help="Ablation-CAM channel scores (k forward passes per image)")
    ap.add_argument("--recipro", action="store_true",
                    help="Recipro-CAM's per-position scores `recipro [n,h,w]` (the layers after the target run on h*w copies per image)")
    ap.add_argument("--hvp", action="store_true", help="ShapleyCAM's Hessian-vector product H (a second backward pass)")
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
    """`python -m camc.export ...`: 0 on success, 1 on a diagnosed mistake, 2 on a usage error."""
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
        layer_names = split_layer_names(args.layer)
        model = load_model(args.model, args.weights, kwargs, seed=args.model_seed)
        summary = export(
            model,
            layer_names,
            args.images,
            args.out,
            target=args.target,
            boxes=args.boxes,
            preprocessed=args.preprocessed,
            size=size,
            normalize=args.normalize,
            mean=_floats(args.mean, "--mean") if args.mean else None,
            std=_floats(args.std, "--std") if args.std else None,
            dtype=args.dtype,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            head=args.head,
            no_head=args.no_head,
            score=args.score,
            score_output=args.score_output,
            ablation=args.ablation,
            hvp=args.hvp,
            recipro=args.recipro,
            channel_batch=args.channel_batch,
            perturb=args.perturb,
            seed=args.seed,
            no_perturbed_image=args.no_perturbed_image,
            no_image=args.no_image,
            extra=args.extra,
            device=args.device,
            model_name=args.model_name or args.model,
            progress=sys.stderr.isatty() and not args.quiet,
        )
    except Error as e:  # ExportError, a camc.InputError; any other camc.Error alike
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    if not args.quiet:
        several = len(summary["layers"]) > 1
        for name, info in summary["layers"].items():
            files = info["files"]
            where = files[0] if len(files) == 1 else f"{len(files)} shards in {os.path.dirname(files[0])}"
            print(f"{PROG}: {summary['n']} images" + (f", layer {name}" if several else "") + f" -> {where}"
                  + (f" (head: {info['head']})" if info["head"] else " (no GAP+linear head found: no W/head.*)"))
            if "perturbed_files" in info:
                pf = info["perturbed_files"]
                print(f"{PROG}: perturbed cache -> {pf[0] if len(pf) == 1 else f'{len(pf)} shards'}")
    return 0


class _CallableModule(types.ModuleType):
    """`import camc.export; camc.export(model, layers, images, out)` calls `export`."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(main())
else:
    sys.modules[__name__].__class__ = _CallableModule
