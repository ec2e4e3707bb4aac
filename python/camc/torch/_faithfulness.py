"""The metrics that re-run the model (docs/metrics.md), on one batch at a time.

Every function takes the model input `x` `[b, C, H, W]`, the maps `[b, H, W]` in [0, 1] at the
input size, and the target classes `[b]` (int64), all on the model's device, and returns one
value per image (a float tensor `[b]` on that device). The perturbed copies are built on the
device and go through the model `batch_size` at a time under `torch.no_grad()`; nothing
leaves the device except for `road`, whose imputation is a sparse solve on the host (SciPy).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import nn

__all__ = ["target_probability", "confidence_change", "auc_curve", "deletion_insertion", "blurred",
           "coherency", "adcc"]

Model = Callable[[torch.Tensor], torch.Tensor]


def target_probability(model: Model, x: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The softmax probability (float32, over the last axis of the output) of each image's class."""
    out = []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            logits = model(x[s:s + batch_size])
            out.append(probability_of(logits, classes[s:s + batch_size]))
    return torch.cat(out) if out else torch.zeros(0, device=x.device)


def probability_of(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """`softmax(logits)[i, classes[i]]` in float32."""
    p = torch.softmax(logits.detach().float(), dim=-1)
    return p.gather(1, classes.reshape(-1, 1).to(p.device)).squeeze(1)


def masked_input(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """`input * map` (pytorch-grad-cam's `multiply_tensor_with_cam`), the map broadcast over channels."""
    return x * maps.unsqueeze(1).to(x.dtype)


def confidence_change(p: torch.Tensor, o: torch.Tensor):
    """Per image: AD = max(0, p−o)/p·100 (0 where p is 0), IC = (o > p)·100, AG = max(0, o−p)/(1−p)·100
    (0 where p is 1 in float32)."""
    zero = torch.zeros_like(p)
    ad = torch.where(p > 0, (p - o).clamp(min=0) / torch.where(p > 0, p, 1.0), zero) * 100
    ic = (o > p).to(p.dtype) * 100
    ag = torch.where(p < 1, (o - p).clamp(min=0) / torch.where(p < 1, 1 - p, 1.0), zero) * 100
    return ad, ic, ag


def deletion_steps(pixels: int):
    """(pixels per step, steps): `ceil(H·W/100)` and `ceil(H·W/step)`."""
    step = max(1, math.ceil(pixels / 100))
    return step, math.ceil(pixels / step)


def auc_curve(y: torch.Tensor) -> torch.Tensor:
    """Trapezoidal area under curves `[b, steps+1]` sampled at x = 0, 1/steps, ..., 1."""
    steps = y.shape[1] - 1
    if steps == 0:
        return y[:, 0]
    return (y.sum(dim=1) - (y[:, 0] + y[:, -1]) / 2) / steps


def _blur_kernel(channels: int, device, dtype) -> torch.Tensor:
    r = torch.arange(-5, 6, dtype=torch.float64)
    k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 50)
    k = (k / k.sum()).to(device=device, dtype=dtype)
    return k.expand(channels, 1, 11, 11).contiguous()


def blurred(x: torch.Tensor) -> torch.Tensor:
    """Insertion's start: each channel convolved with the 11×11 kernel exp(−(i²+j²)/50) (sum 1),
    zero padding."""
    c = x.shape[1]
    return nn.functional.conv2d(x, _blur_kernel(c, x.device, x.dtype), padding=5, groups=c)


def deletion_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Each pixel's position `[b, H·W]` in the order of decreasing map value, ties by raster index."""
    flat = maps.reshape(maps.shape[0], -1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return ranks.scatter_(1, order, positions)


def deletion_insertion(model: Model, x: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor,
                       batch_size: int, insertion: bool, start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """RISE's deletion (`insertion=False`) or insertion AUC per image: the target probability
    after each step of `step` pixels (in `deletion_ranks` order) is set to 0 (deletion) or
    copied from the input into its blurred copy `start` (insertion)."""
    b, _, h, w = x.shape
    step, steps = deletion_steps(h * w)
    ranks = deletion_ranks(maps)
    base = torch.zeros_like(x) if not insertion else (start if start is not None else blurred(x))
    curves = torch.empty(b * (steps + 1), device=x.device)
    total = b * (steps + 1)
    with torch.no_grad():
        for s in range(0, total, batch_size):
            idx = torch.arange(s, min(s + batch_size, total), device=x.device)
            image, t = idx // (steps + 1), idx % (steps + 1)
            changed = ranks[image] < (t * step).clamp(max=h * w).unsqueeze(1)
            changed = changed.reshape(-1, 1, h, w)
            if insertion:
                copies = torch.where(changed, x[image], base[image])
            else:
                copies = torch.where(changed, base[image], x[image])
            curves[s:s + idx.shape[0]] = probability_of(model(copies), classes[image])
    return auc_curve(curves.reshape(b, steps + 1))


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's `batch_pearson_coherency`: cov/(std_a·std_b + 1e-8) per image, float64."""
    a = a.reshape(a.shape[0], -1).double()
    b = b.reshape(b.shape[0], -1).double()
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    m = max(a.shape[1] - 1, 1)
    cov = (a * b).sum(dim=1) / m
    std = torch.sqrt((a * a).sum(dim=1) / m) * torch.sqrt((b * b).sum(dim=1) / m)
    return cov / (std + 1e-8)


def coherency(maps: torch.Tensor, masked_maps: torch.Tensor) -> torch.Tensor:
    """(1 + Pearson(map, map of the masked input)) / 2 (pytorch-grad-cam's `Coherency`)."""
    return ((pearson(masked_maps, maps) + 1) / 2).float()


def adcc(coherency_: torch.Tensor, complexity: torch.Tensor, ad: torch.Tensor) -> torch.Tensor:
    """3 / (1/coherency + 1/(1−complexity) + 1/(1−AD/100)), 0 where a term is 0 (Poppi et al. 2021)."""
    terms = torch.stack([coherency_, 1 - complexity, 1 - ad / 100]).double()
    positive = (terms > 0).all(dim=0)
    value = 3 / torch.where(terms > 0, 1 / terms.clamp(min=1e-300), 0.0).sum(dim=0)
    return torch.where(positive, value, 0.0).float()
