"""`camc.torch.evaluate`: the metrics papers and pytorch-grad-cam report, which re-run the model
on perturbed inputs, and the cache metrics of `camc eval` on the same maps (docs/metrics.md)."""

from __future__ import annotations

import datetime
import math
import os
import re
import sys
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .._errors import InputError, InputTypeError
from .._program import Program
from ._cam import CAM
from ._progress import progress_bar
from ._faithfulness import (adcc, coherency, confidence_change, deletion_insertion, masked_input,
                            probability_of, target_probability)
from ._road import ROAD_PERCENTILES, road

__all__ = ["evaluate", "MODEL_METRICS"]

# The metrics that re-run the model, and which direction is better.
MODEL_METRICS: Dict[str, str] = {
    "ad": "lower", "ic": "higher", "ag": "higher", "deletion": "lower", "insertion": "higher",
    "road": "higher", "coherency": "higher", "adcc": "higher",
}

ImagesLike = Union[torch.Tensor, Iterable[Any]]
BoxesLike = Optional[Sequence[Any]]


def _native():
    from .. import _camc

    return _camc


def _metric_names(metrics: Union[str, Sequence[str]]) -> List[str]:
    if isinstance(metrics, str):
        metrics = [m for m in metrics.split(",")]
    names: List[str] = []
    for m in metrics:
        if not isinstance(m, str):
            raise InputTypeError(f"metrics must be names (str), got {type(m).__name__}")
        m = m.strip()
        if m and m not in names:
            names.append(m)
    if not names:
        raise InputError(f"no metric given; camc.torch.evaluate computes {', '.join(MODEL_METRICS)} "
                         "and loc, iou, pointing, energy (with boxes), complexity")
    return names


def _cache_metrics(names: Sequence[str], has_boxes: bool):
    try:
        return _native().CacheMetrics(list(names), has_boxes)
    except InputError as e:
        if str(e).startswith("unknown metric"):
            raise InputError(f"{e}; and the metrics that re-run the model: {', '.join(MODEL_METRICS)}") from None
        raise


def _batches(images: ImagesLike, batch_size: int) -> Iterator[Tuple[torch.Tensor, Optional[Any]]]:
    """(images, labels or None) per batch: a tensor is cut in `batch_size` rows; an iterable
    yields tensors or (images, labels, ...) tuples, as a DataLoader does."""
    if isinstance(images, torch.Tensor):
        for s in range(0, images.shape[0], batch_size):
            yield images[s:s + batch_size], None
        return
    for i, item in enumerate(images):
        if isinstance(item, (tuple, list)) and item:
            x, labels = item[0], (item[1] if len(item) > 1 else None)
        else:
            x, labels = item, None
        if not isinstance(x, torch.Tensor):
            raise InputTypeError(f"batch {i} of images is a {type(x).__name__}; expected a tensor [n, C, H, W] "
                                 "or an (images, labels) pair")
        yield x, labels


def _class_tensor(value: Any, n: int, what: str, device) -> torch.Tensor:
    t = torch.as_tensor(value).reshape(-1) if not isinstance(value, int) else torch.full((n,), value)
    if t.is_floating_point() or t.dtype == torch.bool or t.numel() != n:
        raise InputError(f"{what}: expected {n} integer class indices, got {t.dtype} of {t.numel()} values")
    return t.to(device=device, dtype=torch.int64)


def _boxes_of(boxes: BoxesLike, start: int, n: int) -> Optional[List[List[List[float]]]]:
    if boxes is None:
        return None
    out = []
    for i in range(start, start + n):
        try:
            b = boxes[i]
        except (IndexError, KeyError):
            raise InputError(f"boxes has no entry for image {i}; give one list of [x0, y0, x1, y1] per image") from None
        arr = np.asarray(b.cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float32).reshape(-1)
        if arr.size % 4:
            raise InputError(f"boxes of image {i}: expected [x0, y0, x1, y1] boxes, got {arr.size} numbers")
        out.append(arr.reshape(-1, 4).tolist())
    return out


def _picture(x: torch.Tensor) -> np.ndarray:
    """The report's input image: each image min-max scaled to uint8 `[n, 3, H, W]` (grey repeated)."""
    x = x.detach().float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = x[:, :3]
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    x = (x - lo) / (hi - lo).clamp(min=1e-12)
    return (x * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def model_metric_values(names: Sequence[str], model, x, maps, classes, p, batch_size: int,
                        road_percentiles=ROAD_PERCENTILES, road_noise: float = 0.01,
                        generator: Optional[torch.Generator] = None, again=None,
                        complexity=None) -> Dict[str, torch.Tensor]:
    """Each image's value `[b]` of the metrics `names` that re-run the model. For `coherency` and
    `adcc`, `again(masked_input)` is the program's map of the masked input; for `adcc`,
    `complexity(maps)` each map's `complexity`."""
    need = set(names)
    results: Dict[str, torch.Tensor] = {}
    if need & {"ad", "ic", "ag", "adcc"}:
        o = target_probability(model, masked_input(x, maps), classes, batch_size)
        results["ad"], results["ic"], results["ag"] = confidence_change(p, o)
    if "deletion" in need:
        results["deletion"] = deletion_insertion(model, x, maps, classes, batch_size, insertion=False)
    if "insertion" in need:
        results["insertion"] = deletion_insertion(model, x, maps, classes, batch_size, insertion=True)
    if "road" in need:
        results["road"] = road(model, x, maps, classes, batch_size, road_percentiles, road_noise, generator)
    if need & {"coherency", "adcc"}:
        results["coherency"] = coherency(maps, again(masked_input(x, maps)))
    if "adcc" in need:
        results["adcc"] = adcc(results["coherency"], complexity(maps).to(results["ad"].device), results["ad"])
    return results


class _Program:
    """One evaluated program: its CAM, accumulators and per-image values."""

    def __init__(self, label: str, cam: CAM, cache, model_names: Sequence[str]):
        self.label = label
        self.cam = cam
        self.cache = cache
        self.values: Dict[str, List[torch.Tensor]] = {m: [] for m in model_names}
        self.cache_columns: List[List[Optional[float]]] = []
        self.report_maps: List[torch.Tensor] = []


class _Run:
    """The state of one `evaluate` call."""

    def __init__(self, model, names, cache_names, boxes, batch_size, road_percentiles, road_noise, seed):
        self.model = model
        self.names = names
        self.model_names = [m for m in names if m in MODEL_METRICS]
        self.cache_names = cache_names
        self.boxes = boxes
        self.batch_size = batch_size
        self.road_percentiles = road_percentiles
        self.road_noise = road_noise
        self.generator = torch.Generator().manual_seed(seed)
        self.complexity = _cache_metrics(["complexity"], False) if "adcc" in names else None

    def _complexity(self, maps: torch.Tensor) -> torch.Tensor:
        host = np.ascontiguousarray(maps.detach().float().cpu().numpy())
        return torch.tensor(self.complexity.add(host)[0], dtype=torch.float32)

    def score(self, prog: _Program, x, maps, classes, p, start):
        results = model_metric_values(self.model_names, self.model, x, maps, classes, p, self.batch_size,
                                      self.road_percentiles, self.road_noise, self.generator,
                                      again=lambda masked: prog.cam(masked, targets=classes.tolist()),
                                      complexity=self._complexity)
        for m in self.model_names:
            prog.values[m].append(results[m].detach().float().cpu())
        if self.cache_names:
            columns = prog.cache.add(maps.detach().float().cpu().numpy(), _boxes_of(self.boxes, start, x.shape[0]))
            if not prog.cache_columns:
                prog.cache_columns = [[] for _ in columns]
            for all_, batch in zip(prog.cache_columns, columns):
                all_.extend(batch)

    def rows(self, prog: _Program, per_image: bool) -> List[Dict[str, Any]]:
        rows: List[Dict[str, Any]] = []
        cache_rows = prog.cache.rows() if prog.cache is not None else []
        cache_at = 0
        counts = prog.cache.row_counts() if prog.cache is not None else []
        for name in self.names:
            if name in MODEL_METRICS:
                values = torch.cat(prog.values[name]) if prog.values[name] else torch.zeros(0)
                finite = values[torch.isfinite(values)]
                row = {"program": prog.label, "metric": name,
                       "value": float(finite.double().mean()) if finite.numel() else None,
                       "better": MODEL_METRICS[name], "images": int(finite.numel()),
                       "skipped": int(values.numel() - finite.numel())}
                if per_image:
                    row["per_image"] = [float(v) if math.isfinite(v) else None for v in values.tolist()]
                rows.append(row)
                continue
            for _ in range(counts.pop(0)):
                metric, value, better, images, skipped = cache_rows[cache_at]
                row = {"program": prog.label, "metric": metric, "value": value, "better": better,
                       "images": images, "skipped": skipped}
                if per_image:
                    row["per_image"] = list(prog.cache_columns[cache_at]) if prog.cache_columns else []
                rows.append(row)
                cache_at += 1
        return rows


def _labels(programs) -> List[Tuple[str, Union[str, Program]]]:
    if isinstance(programs, (str, Program)):
        programs = [programs]
    out = []
    for p in programs:
        if isinstance(p, str):
            out.append((p.strip() if "\n" not in p else "program", p))
        elif isinstance(p, Program):
            out.append((p.name, p))
        else:
            raise InputTypeError(f"programs must be names, .cam paths, source text or camc.Program, got {type(p).__name__}")
    if not out:
        raise InputError("no program given")
    return out


def evaluate(
    model: nn.Module,
    target_layers,
    programs,
    images: ImagesLike,
    targets: Any = None,
    metrics: Union[str, Sequence[str]] = ("ad", "ic", "ag"),
    boxes: BoxesLike = None,
    batch_size: int = 32,
    per_image: bool = False,
    report: Optional[Union[str, os.PathLike]] = None,
    *,
    reshape_transform=None,
    scalars: Optional[Mapping[str, float]] = None,
    road_percentiles: Sequence[float] = ROAD_PERCENTILES,
    road_noise: float = 0.01,
    seed: int = 0,
    report_images: int = 12,
    progress: Optional[bool] = None,
) -> List[Dict[str, Any]]:
    """Each program's metrics on `images`: the rows of `camc eval --json` (docs/metrics.md).

    - `programs`: one or a list of stdlib names, `.cam` paths, source text or `camc.Program`s,
      each run as `camc.torch.CAM(model, target_layers, program)`.
    - `images`: a tensor `[n, C, H, W]` (cut in `batch_size` rows) or an iterable of batches
      (tensors, or `(images, labels)` pairs as a DataLoader yields).
    - `targets`: None (each image's predicted class), an int, one class per image (a list or
      tensor over all images), or `"labels"` (the labels of each `(images, labels)` batch).
    - `metrics`: `ad ic ag deletion insertion road coherency adcc` (re-run the model) and
      `loc iou pointing energy` (with `boxes`: per image a list of `[x0, y0, x1, y1]` in input
      pixels, `x1`, `y1` exclusive), `complexity`.
    - `batch_size`: images per batch, and model inputs per forward pass of the perturbed copies.
    - `per_image=True`: each row also holds `per_image`, the value of every image (None: skipped).
    - `report=DIR`: writes `DIR/report.html` (the metric table, each image with its target and
      its overlays, every metric per image on hover) as `camc eval --report` does, for the first
      `report_images` images.
    - `road_percentiles`, `road_noise`, `seed`: ROAD's percentiles, its imputation noise
      (pytorch-grad-cam's 0.01) and the seed of that noise.
    - `progress`: a tqdm bar (default: when stderr is a terminal and tqdm is installed).
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    names = _metric_names(metrics)
    cache_names = [m for m in names if m not in MODEL_METRICS]
    if cache_names:
        _cache_metrics(cache_names, boxes is not None)  # fails before any work
    if "road" in names:
        from ._road import _scipy

        _scipy()
    if isinstance(targets, str) and targets != "labels":
        raise InputError(f"targets={targets!r}: the only name accepted is \"labels\"")
    labels = _labels(programs)
    run = _Run(model, names, cache_names, boxes, batch_size, tuple(road_percentiles), float(road_noise), seed)
    progs: List[_Program] = []
    try:
        for label, spec in labels:
            cam = CAM(model, target_layers, spec, reshape_transform=reshape_transform, scalars=scalars)
            cache = _cache_metrics(cache_names, boxes is not None) if cache_names else None
            progs.append(_Program(label, cam, cache, run.model_names))
        total = images.shape[0] if isinstance(images, torch.Tensor) else None
        bar = progress_bar(total, "image", "camc evaluate", progress)
        start = 0
        shown: List[np.ndarray] = []
        captions: List[Optional[str]] = []
        p_all: List[torch.Tensor] = []
        try:
            for x, batch_labels in _batches(images, batch_size):
                n = x.shape[0]
                x = x.to(progs[0].cam.device)
                classes = _targets_for(targets, batch_labels, start, n, x.device)
                p = None
                for prog in progs:
                    maps = prog.cam(x, targets=None if classes is None else classes.tolist())
                    if classes is None:
                        classes = prog.cam.outputs.argmax(dim=-1).to(x.device)
                    if p is None:
                        p = probability_of(prog.cam.outputs, classes)
                    run.score(prog, x, maps, classes, p, start)
                    if report is not None and start < report_images:
                        prog.report_maps.append(maps[:report_images - start].detach().float().cpu())
                if report is not None and start < report_images:
                    keep = min(n, report_images - start)
                    shown.append(_picture(x[:keep]))
                    captions.extend(f"target {c} · p {q:.4f}" for c, q in zip(classes[:keep].tolist(), p[:keep].tolist()))
                p_all.append(p.cpu())
                start += n
                if bar is not None:
                    bar.update(n)
        finally:
            if bar is not None:
                bar.close()
        if start == 0:
            raise InputError("images holds no image")
        rows = [row for prog in progs for row in run.rows(prog, per_image or report is not None)]
        if report is not None:
            _write_report(report, model, progs, rows, shown, captions, boxes, start)
        if not per_image:
            for row in rows:
                row.pop("per_image", None)
        return rows
    finally:
        for prog in progs:
            prog.cam.close()


def _targets_for(targets, batch_labels, start: int, n: int, device) -> Optional[torch.Tensor]:
    if targets is None:
        return None
    if isinstance(targets, str):
        if batch_labels is None:
            raise InputError('targets="labels" needs batches of (images, labels)')
        return _class_tensor(batch_labels, n, "the labels of a batch", device)
    if isinstance(targets, bool):
        raise InputTypeError("targets must be None, an int, \"labels\" or one class per image")
    if isinstance(targets, int):
        return torch.full((n,), targets, dtype=torch.int64, device=device)
    try:
        part = targets[start:start + n]
    except TypeError:
        raise InputTypeError(f"targets must be None, an int, \"labels\" or one class per image, "
                             f"got {type(targets).__name__}") from None
    return _class_tensor(part, n, f"targets of images {start}..{start + n - 1}", device)


def _folder(label: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "program"
    return "input_" if name == "input" else name


def _write_report(report, model, progs, rows, shown, captions, boxes, n_images):
    from .._camc import __version__

    folder = os.fspath(report)
    os.makedirs(folder, exist_ok=True)
    count = sum(s.shape[0] for s in shown)
    methods = []
    for prog in progs:
        name = _folder(prog.label)
        while name in methods:
            name += "_"
        methods.append(name)
    maps = np.stack([torch.cat(prog.report_maps)[:count].numpy() for prog in progs]).astype(np.float32)
    pictures = np.ascontiguousarray(np.concatenate(shown)) if shown else None
    hovers = []
    for i in range(count):
        per = []
        for prog in progs:
            items = [f"{r['metric']} {r['per_image'][i]:.4f}" if r["per_image"][i] is not None else f"{r['metric']} n/a"
                     for r in rows if r["program"] == prog.label and len(r.get("per_image", [])) > i]
            per.append(" · ".join(items))
        hovers.append(per)
    table: Dict[str, List[Tuple[str, Optional[float], str, int, int]]] = {}
    for prog, method in zip(progs, methods):
        table[method] = [(r["metric"], r["value"], r["better"], r["images"], r["skipped"])
                         for r in rows if r["program"] == prog.label]
    layers = ", ".join(progs[0].cam._layer_names)
    provenance = [("model", type(model).__name__), ("layer", layers), ("images", str(n_images)),
                  ("camc", __version__), ("date", datetime.date.today().isoformat())]
    page = _native().write_eval_report(
        folder, f"camc.torch.evaluate — {type(model).__name__}", provenance, methods,
        np.ascontiguousarray(maps), list(table.items()), pictures,
        _boxes_of(boxes, 0, count), captions, hovers)
    if sys.stderr.isatty():
        print(f"report: {page}", file=sys.stderr)
    return page
