"""ROAD (Rong et al. 2022) as pytorch-grad-cam's `ROADCombined` computes it: for each percentile,
the pixels above it (most relevant first, MoRF) or below it (least relevant first, LeRF) are
replaced by the noisy linear imputation of their neighbours, and the score is
(mean LeRF − mean MoRF confidence) / 2 — the confidence change of both relative to the input, whose
probability cancels. The imputation solves one sparse linear system per image and percentile on
the host (SciPy, imported here only); the imputed copies go through the model in batches.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch

from .._errors import Error
from ._faithfulness import probability_of

__all__ = ["ROAD_PERCENTILES", "road", "impute"]

ROAD_PERCENTILES = (20, 40, 60, 80)

# The weights of the 8 neighbours (pytorch-grad-cam's `neighbors_weights`, from the ROAD authors).
_NEIGHBOURS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
               ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))


def _scipy():
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.linalg import spsolve
    except ImportError:
        raise Error("metric `road` needs SciPy for its linear imputation: pip install scipy") from None
    return coo_matrix, spsolve


def impute(image: np.ndarray, keep: np.ndarray, noise: float, generator: Optional[torch.Generator]) -> Optional[np.ndarray]:
    """The noisy linear imputation of `image` `[C, H, W]` where `keep` `[H, W]` is False: each
    missing pixel is the weighted mean of its neighbours (a sparse system), plus `noise`·N(0,1).
    With no pixel kept the system's right-hand side is 0 and so is the image (as pytorch-grad-cam's
    solver gives); None when the solve fails (a non-finite solution)."""
    coo_matrix, spsolve = _scipy()
    h, w = keep.shape
    known = keep.reshape(-1)
    flat = image.reshape(image.shape[0], -1).astype(np.float64)
    missing = np.flatnonzero(~known)
    if missing.size == 0:
        return image.copy()
    variable = np.zeros(h * w, dtype=np.int64)
    variable[missing] = np.arange(missing.size)
    rows: List[np.ndarray] = []
    cols: List[np.ndarray] = []
    vals: List[np.ndarray] = []
    rhs = np.zeros((missing.size, flat.shape[0]))
    neighbours = np.ones(missing.size)
    y, x = missing // w, missing % w
    for (dy, dx), weight in _NEIGHBOURS:
        ny, nx = y + dy, x + dx
        inside = (ny >= 0) & (nx >= 0) & (ny < h) & (nx < w)
        neighbours[~inside] -= weight
        ids = np.flatnonzero(inside)
        coords = ny[inside] * w + nx[inside]
        has_value = known[coords]
        rhs[ids[has_value]] -= weight * flat[:, coords[has_value]].T
        rows.append(ids[~has_value])
        cols.append(variable[coords[~has_value]])
        vals.append(np.full(int((~has_value).sum()), weight))
    diagonal = np.arange(missing.size)
    rows.append(diagonal)
    cols.append(diagonal)
    vals.append(-neighbours)
    solution = _solve(coo_matrix, spsolve, rows, cols, vals, rhs, missing.size) if known.any() \
        else np.zeros((flat.shape[0], missing.size), dtype=np.float32)
    if not np.isfinite(solution).all():
        return None
    if noise:
        solution = solution + noise * torch.randn(solution.shape, generator=generator).numpy()
    out = flat.astype(np.float32)
    out[:, missing] = solution
    return out.reshape(image.shape)


def _solve(coo_matrix, spsolve, rows, cols, vals, rhs, size: int) -> np.ndarray:
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(size, size)).tocsc()
    return np.asarray(spsolve(a, rhs)).reshape(size, -1).T.astype(np.float32)


def road(model, x: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor, batch_size: int,
         percentiles: Sequence[float] = ROAD_PERCENTILES, noise: float = 0.01,
         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """ROADCombined per image (float32 `[b]` on `x`'s device; NaN for an image whose imputation
    failed)."""
    b = x.shape[0]
    host_x = x.detach().float().cpu().numpy()
    host_maps = maps.detach().float().cpu().numpy()
    copies: List[np.ndarray] = []
    failed = np.zeros(b, dtype=bool)
    # Order: per image, LeRF at every percentile then MoRF at every percentile.
    for i in range(b):
        for relevance in (1 - host_maps[i], host_maps[i]):
            for q in percentiles:
                keep = relevance < np.percentile(relevance, q)
                filled = impute(host_x[i], keep, noise, generator)
                if filled is None:
                    failed[i] = True
                    filled = host_x[i]
                copies.append(filled)
    stacked = torch.from_numpy(np.stack(copies)).to(device=x.device, dtype=x.dtype)
    per = 2 * len(percentiles)
    image = torch.arange(b, device=x.device).repeat_interleave(per)
    scores = torch.empty(stacked.shape[0], device=x.device)
    with torch.no_grad():
        for s in range(0, stacked.shape[0], batch_size):
            scores[s:s + batch_size] = probability_of(model(stacked[s:s + batch_size]),
                                                      classes[image[s:s + batch_size]])
    scores = scores.reshape(b, 2, len(percentiles)).mean(dim=2)
    value = (scores[:, 0] - scores[:, 1]) / 2
    return torch.where(torch.from_numpy(failed).to(x.device), float("nan"), value)
