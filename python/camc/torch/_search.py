"""`camc.torch.search`: `camc search` with the model in the loop — the same engine (space,
pruning, train/holdout split, checkpoint and resume, `rank-NN.cam`, `report.json`), each
candidate's maps scored by a metric that re-runs the model (docs/search.md)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import numpy as np
import torch
from torch import nn

from .._errors import Error, InputError, InputTypeError
from ._evaluate import MODEL_METRICS, _class_tensor, model_metric_values
from ._faithfulness import target_probability
from ._progress import progress_bar
from ._road import ROAD_PERCENTILES

__all__ = ["search", "SEARCH_METRICS"]

# The model metrics a search can optimize: one value per image from the candidate's map alone
# (coherency re-runs the candidate on the masked input, which needs its tensors there).
SEARCH_METRICS = ("ad", "ic", "ag", "deletion", "insertion", "road")

CACHE_FILE = "model-cache.safetensors"


def _fingerprint(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, extra: str) -> str:
    """What the search's results depend on besides the cache: the images, classes, model
    weights and metric options."""
    h = hashlib.sha256()
    h.update(extra.encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    h.update(classes.cpu().numpy().tobytes())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def search(
    model: nn.Module,
    target_layers,
    images: torch.Tensor,
    targets: Any = None,
    metric: str = "ag",
    boxes=None,
    budget: int = 200,
    holdout: float = 0.3,
    seed: int = 0,
    out: Union[str, os.PathLike] = "camc-search",
    *,
    resume: bool = False,
    force: bool = False,
    keep: int = 5,
    space: Optional[Union[str, os.PathLike]] = None,
    max_size: Optional[int] = None,
    batch_size: int = 32,
    road_noise: float = 0.01,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Synthesizes programs `relu(sum[k](WEIGHTS * A))` that score best on a metric that re-runs
    the model (`ad`, `ic`, `ag`, `deletion`, `insertion`, `road`; docs/metrics.md).

    The target layer's activations and gradients of `images` (the model input `[n, C, H, W]`)
    are recorded once into `out/model-cache.safetensors` (camc.export); each candidate's maps,
    post-processed to the input size, are scored by the model on the masked / deleted / inserted
    images in batches of `batch_size`. Everything else is `camc search`'s: the space (`space`: a
    TOML file, `max_size`), `budget` candidates, the `holdout` split by `seed`, the checkpoint in
    `out` (`resume=True` continues an interrupted search of the same images, model and metric;
    `force=True` starts over), `out/rank-NN.cam` for the `keep` best and `out/report.json`,
    whose stdlib rows score every stdlib method the recorded tensors allow on the same split.
    Returns report.json's content with `summary`, the text `camc search` prints.
    """
    from .. import _camc
    from ..export import export

    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InputError("images must be the model input, a tensor [n, C, H, W]")
    if metric not in SEARCH_METRICS:
        other = " (coherency and adcc re-run each candidate on masked inputs: use camc.torch.evaluate on the winners)" \
            if metric in MODEL_METRICS else ""
        raise InputError(f"metric `{metric}`: camc.torch.search optimizes one of {', '.join(SEARCH_METRICS)}{other}; "
                         "cache metrics are `camc search --cache` (write a cache with camc.export)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    layers = [target_layers] if isinstance(target_layers, nn.Module) else list(target_layers)
    if len(layers) != 1:
        raise InputError(f"camc.torch.search explains one layer; got {len(layers)} target layers")
    if metric == "road":
        from ._road import _scipy

        _scipy()
    folder = Path(out)
    if (folder / "checkpoint.jsonl").exists() and not (resume or force):
        raise Error(f"`{folder}` holds a search's checkpoint: resume=True continues it, force=True starts over")
    device = next((p.device for p in model.parameters()), images.device)
    x = images.detach().to(device)
    n, _, h, w = x.shape
    model.eval()
    if targets is None:
        with torch.no_grad():
            classes = torch.cat([model(x[s:s + batch_size]).argmax(dim=-1) for s in range(0, n, batch_size)])
    else:
        classes = _class_tensor(targets, n, "targets", device) if not isinstance(targets, bool) else None
        if classes is None:
            raise InputTypeError("targets must be None, an int or one class per image")
    classes = classes.to(device=device, dtype=torch.int64)
    stamp = _fingerprint(model, x, classes, f"{metric}|{road_noise}|{type(model).__name__}")
    cache = folder / CACHE_FILE
    if not (resume and cache.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        export(model, layers, x, cache, target=classes.cpu(), preprocessed=True, no_image=True,
               boxes=boxes, batch_size=batch_size)
    p = target_probability(model, x, classes, batch_size)
    generator = torch.Generator().manual_seed(seed)

    def score(first: int, maps: np.ndarray):
        m = torch.from_numpy(maps).to(device)
        b = m.shape[0]
        values = model_metric_values([metric], model, x[first:first + b], m, classes[first:first + b],
                                     p[first:first + b], batch_size, ROAD_PERCENTILES, road_noise, generator)
        return [float(v) if np.isfinite(v) else None for v in values[metric].cpu().tolist()]

    bar = progress_bar(budget, "candidate", "camc search", progress)

    def advance(done: int, total: int, best: Optional[str]) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(best or "", refresh=True)

    try:
        summary = _camc.search(str(cache), str(folder), f"{metric} (model in the loop, inputs {stamp})",
                               MODEL_METRICS[metric], score, (h, w), budget=budget, holdout=holdout, seed=seed,
                               resume=resume, force=force, keep=keep,
                               space=None if space is None else os.fspath(space), max_size=max_size,
                               batch=batch_size, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    report = json.loads((folder / "report.json").read_text())
    report["summary"] = summary
    return report
