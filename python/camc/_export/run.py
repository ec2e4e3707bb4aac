"""The export loop: one forward and one backward pass per batch of images serve every layer."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .._errors import InputError
from ..torch import (
    ClassifierOutputSoftmaxTarget,
    LayerTap,
    ablation_scores,
    find_head,
    hessian_vector_product,
    reciprocam_scores,
    score_cam_scores,
)
from .base import DTYPES, PROG, ExportError
from .inputs import Pixels
from .writer import CacheWriter, check_output, perturbed_path

RESERVED = {"A", "G", "H", "target", "logits", "logit", "W", "head.weight", "head.bias", "image", "boxes",
            "box_count", "score", "ablation", "recipro"}


@dataclass
class ExportOptions:
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
    hvp: bool = False
    recipro: bool = False
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


def _progress(enabled: bool, label: str, done: int, total: int):
    if enabled:
        sys.stderr.write(f"\r{PROG}: {label} {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _score_target(score_output: str):
    """What --score records: the target's logit (an int class) or its softmax probability."""
    if score_output == "prob":
        return ClassifierOutputSoftmaxTarget
    return int


def check_options(opts: ExportOptions, n: int) -> None:
    if opts.dtype not in DTYPES:
        raise ExportError(f"--dtype {opts.dtype}: expected one of {', '.join(DTYPES)}")
    if opts.batch_size < 1:
        raise ExportError("--batch-size must be at least 1")
    if opts.channel_batch < 1:
        raise ExportError("--channel-batch must be at least 1")
    if opts.shard_size is not None and opts.shard_size < 1:
        raise ExportError("--shard-size must be at least 1")
    if opts.score_output not in ("logit", "prob"):
        raise ExportError(f"--score-output {opts.score_output}: expected logit or prob")
    if opts.targets is not None and len(opts.targets) != n:
        raise ExportError(f"{len(opts.targets)} targets for {n} images")
    if opts.boxes is not None and opts.boxes.shape[0] != n:
        raise ExportError(f"boxes for {opts.boxes.shape[0]} images, but there are {n} images")
    for name, t in opts.extra.items():
        if name in RESERVED:
            raise ExportError(f"--extra {name}: the exporter writes a tensor of that name itself")
        if t.dim() == 0 or t.shape[0] != n:
            raise ExportError(f"--extra {name}: has shape {list(t.shape)}; its leading axis must be the {n} images")


def export_pixels(
    model: nn.Module, pixels: Pixels, layers: List[Tuple[str, nn.Module]], outs: Dict[str, str], opts: ExportOptions
) -> Dict[str, object]:
    """Writes one cache (and perturbed cache) per layer to `outs[name]`; returns a summary."""
    data = pixels.data
    n = data.shape[0]
    check_options(opts, n)
    for name, _ in layers:
        check_output(outs[name], opts.shard_size)
        if opts.perturb is not None:
            check_output(perturbed_path(outs[name], opts.shard_size), opts.shard_size)
    several = len(layers) > 1
    pdtype = next((p.dtype for p in model.parameters()), torch.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    store = DTYPES[opts.dtype]
    nchan = data.shape[1]
    if not pixels.preprocessed:
        if len(opts.mean) != nchan or len(opts.std) != nchan:
            if not (len(opts.mean) == 3 and len(opts.std) == 3 and nchan == 1):
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

    def which(name: str) -> str:
        return f" (layer {name})" if several else ""

    was_training = model.training
    model.eval()
    taps = [LayerTap(module, name) for name, module in layers]
    for tap in taps:
        tap.enabled = False  # on during the main pass only
    saved_grad = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(opts.seed)
    summary: Dict[str, object] = {"n": n, "layers": {name: {"head": None} for name, _ in layers}}
    try:

        def check_logits(logits, tgt) -> torch.Tensor:
            if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                raise ExportError(
                    "the model's output must be a [batch, classes] tensor of logits, got "
                    + (str(list(logits.shape)) if isinstance(logits, torch.Tensor) else type(logits).__name__)
                )
            for tap in taps:
                if tap.calls == 0:
                    raise ExportError(f"--layer {tap.name}: the module never ran in the forward pass")
                if tap.calls > 1:
                    raise ExportError(
                        f"--layer {tap.name}: the module ran {tap.calls} times in one forward pass "
                        "(a shared module); pick a module that runs once"
                    )
            if tgt is None:
                tgt = logits.detach().argmax(1).cpu()
            C = logits.shape[1]
            bad = [int(t) for t in tgt if not 0 <= int(t) < C]
            if bad:
                raise ExportError(f"target class {bad[0]} out of range: the model has {C} classes")
            return tgt

        def run_batch(px: torch.Tensor, tgt: Optional[torch.Tensor]):
            """A, G (and H) of every layer, logits, target logits and targets of one batch."""
            x = model_input(px)
            hess: Dict[str, torch.Tensor] = {}
            if opts.hvp:
                # camc.torch's hessian_vector_product: one forward pass, gradients with
                # create_graph=True, H per tap (its taps hand the rest of the model a copy of each
                # layer's output, so a later in-place op cannot change the tensor H is taken with
                # respect to; tests: hvp_is_the_hessian_times_a_also_under_inplace_ops).
                try:
                    res = hessian_vector_product(model, taps, x, None if tgt is None else [int(t) for t in tgt])
                finally:
                    for tap in taps:
                        tap.enabled = False
                logits = res.outputs
                tgt = check_logits(logits, torch.tensor([int(fn.category) for fn in res.targets]))
                chosen = logits.gather(1, tgt.to(logits.device).view(-1, 1)).squeeze(1)
                hess = {tap.name: h for tap, h in zip(taps, res.hvp)}
            else:
                x = x.requires_grad_(True)
                for tap in taps:
                    tap.reset()
                    tap.enabled, tap.want_grad = True, True
                try:
                    with torch.enable_grad():
                        logits = model(x)
                        tgt = check_logits(logits, tgt)
                        chosen = logits.gather(1, tgt.to(logits.device).view(-1, 1)).squeeze(1)
                        chosen.sum().backward()
                finally:
                    for tap in taps:
                        tap.enabled, tap.want_grad = False, False
            out = {}
            for tap in taps:
                if tap.gradient is None:
                    raise ExportError(
                        f"--layer {tap.name}: no gradient reached the layer (is the target logit computed from it?)"
                    )
                if tap.activation.dim() not in (4, 5):
                    raise ExportError(
                        f"--layer {tap.name}: output has shape {list(tap.activation.shape)}; a CAM layer gives "
                        "[batch, k, h, w] (or [batch, k, d, h, w])"
                    )
                out[tap.name] = (tap.activation, tap.gradient, hess.get(tap.name))
                tap.reset()
            return out, logits.detach(), chosen.detach(), tgt

        score_target = _score_target(opts.score_output)
        shared: Dict[str, Dict[str, torch.Tensor]] = {}
        metas: Dict[str, Dict[str, str]] = {}
        clean_targets = None
        total_passes = 2 if opts.perturb is not None else 1
        for pass_no in range(total_passes):
            perturbed = pass_no == 1
            writers: Dict[str, CacheWriter] = {}
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
                per_layer, logits, chosen, tgt = run_batch(px, tgt)
                targets_seen.append(tgt.cpu())
                if not metas:  # the first batch: heads and metadata of every layer, before writing anything
                    for name, _ in layers:
                        a = per_layer[name][0]
                        sh: Dict[str, torch.Tensor] = {}
                        head_name = None
                        if not opts.no_head:
                            try:
                                head_name, head = find_head(model, a.float(), logits.float(), opts.head)
                            except InputError as e:
                                raise ExportError(f"{e}{which(name)}") from None
                            if head is not None:
                                sh["head.weight"] = head.weight.detach().float().cpu().clone()
                                if head.bias is not None:
                                    sh["head.bias"] = head.bias.detach().float().cpu().clone()
                                else:
                                    sh["head.bias"] = torch.zeros(head.out_features)
                        if (opts.score or opts.ablation or opts.recipro) and a.dim() != 4:
                            raise ExportError(f"--score/--ablation/--recipro support 2-D layers ([k, h, w]) only{which(name)}")
                        meta = {
                            "image_size": ",".join(str(s) for s in data.shape[2:]),
                            "model": opts.model_name or type(model).__name__,
                            "layer": name,
                            "exporter": "camc.export",
                            "dtype": opts.dtype,
                            "target": "given" if opts.targets is not None else "argmax",
                        }
                        if head_name:
                            meta["head"] = head_name
                        if opts.score:
                            meta["score"] = (f"pytorch-grad-cam ScoreCAM: {opts.score_output} of the target on "
                                             "input * normalized upsampled A_k")
                        if opts.ablation:
                            meta["ablation"] = ("pytorch-grad-cam AblationCAM: target logit with channel k set to 0 "
                                                "(if min(A) != 0: min(A) - j*1e7 for the j-th channel of each batch of "
                                                f"{opts.channel_batch})")
                        if opts.recipro:
                            meta["recipro"] = ("Recipro-CAM (sybyun/ReciproCAM): softmax probability of the target "
                                               "for each position's mosaic copy, min-max normalized over [h, w]")
                        if opts.hvp:
                            meta["hvp"] = ("pytorch-grad-cam ShapleyCAM: H = d(G . A)/dA, the Hessian of the "
                                           "target logit times A")
                        meta.update(opts.metadata)
                        metas[name], shared[name] = meta, sh
                        summary["layers"][name]["head"] = head_name
                xin = model_input(px) if (not perturbed and (opts.score or opts.ablation or opts.recipro)) else None
                for tap in taps:
                    name = tap.name
                    a, g, h = per_layer[name]
                    row = {
                        "A": a.to(store).cpu(),
                        "G": g.to(store).cpu(),
                    }
                    if opts.hvp:
                        row["H"] = (h if h is not None else torch.zeros_like(a)).to(store).cpu()
                    row.update({
                        "target": tgt.to(torch.int64).cpu(),
                        "logits": logits.float().cpu(),
                        "logit": chosen.float().cpu(),
                    })
                    if "head.weight" in shared[name]:
                        row["W"] = shared[name]["head.weight"][row["target"]]
                    if opts.save_image and (opts.perturbed_image or not perturbed):
                        img = as_image(px)
                        if img is not None:
                            row["image"] = img
                    if opts.boxes is not None:
                        row["boxes"] = opts.boxes[b0 : b0 + opts.batch_size]
                        if opts.box_count is not None:
                            row["box_count"] = opts.box_count[b0 : b0 + opts.batch_size]
                    for ename, t in opts.extra.items():
                        row[ename] = t[b0 : b0 + opts.batch_size]
                    if xin is not None:  # a: on the model's device, in its dtype
                        classes = [int(t) for t in tgt]
                        if opts.score:
                            # one image at a time: the masks are [k, H, W] per image
                            row["score"] = torch.cat([
                                score_cam_scores(model, tap, xin[i : i + 1], a[i : i + 1],
                                                 [score_target(classes[i])], batch_size=opts.channel_batch).float().cpu()
                                for i in range(a.shape[0])
                            ])
                        if opts.ablation:
                            row["ablation"] = ablation_scores(model, tap, xin, a, classes,
                                                              batch_size=opts.channel_batch).float().cpu()
                        if opts.recipro:
                            with tap.suspended():
                                row["recipro"] = reciprocam_scores(model, tap, xin, classes,
                                                                   batch_size=opts.channel_batch).float().cpu()
                    if name not in writers:
                        meta = dict(metas[name])
                        if perturbed:
                            meta["perturbation"] = f"gaussian noise sigma={opts.perturb} (pixel units, seed {opts.seed})"
                            meta["target"] = "as in the clean cache"
                            meta.pop("score", None)
                            meta.pop("ablation", None)
                            meta.pop("recipro", None)
                        path = outs[name] if not perturbed else perturbed_path(outs[name], opts.shard_size)
                        writers[name] = CacheWriter(path, opts.shard_size, shared[name], meta)
                    writers[name].add(row)
                _progress(opts.progress, "perturbed" if perturbed else "images", min(n, b0 + opts.batch_size), n)
            if not perturbed:
                clean_targets = torch.cat(targets_seen)
            for name, w in writers.items():
                summary["layers"][name]["perturbed_files" if perturbed else "files"] = w.finish()
        summary["files"] = [f for name, _ in layers for f in summary["layers"][name]["files"]]
        if opts.perturb is not None:
            summary["perturbed_files"] = [f for name, _ in layers for f in summary["layers"][name]["perturbed_files"]]
        return summary
    finally:
        for tap in taps:
            tap.close()
        for p, r in zip(model.parameters(), saved_grad):
            p.requires_grad_(r)
        model.train(was_training)
