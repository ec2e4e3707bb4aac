"""Recipro-CAM (Byun & Lee, CVPR 2024 XAI4CV workshop; official code `sybyun/ReciproCAM`,
`src/recipro_cam.py`) for any model, through a forward hook.

The target layer's output `A` `[n, k, h, w]` is followed, in the same forward pass, by `h·w`
"mosaic" copies per image: copy (i, j) keeps the channel vector `A[:, :, i, j]` at position
(i, j) and zeros elsewhere (the Gaussian variant spreads it over the 3×3 neighbourhood with the
kernel [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16, cut at the borders). The layers after it run
once on the batch of copies, the layers before it once on the images. The score at (i, j) is
the softmax probability of the target class for copy (i, j); the official code then min-max
normalizes each image's `[h, w]` scores, without an epsilon (a constant map gives zeros here).
"""

from __future__ import annotations

import torch

__all__ = ["placements", "mosaic", "recipro_scores", "reciprocam_scores", "RECIPRO_METHODS"]

# Program name -> whether the copies are spread by the Gaussian kernel.
RECIPRO_METHODS = {"reciprocam": False, "reciprocam_gauss": True}

# The program CAM runs on the scores: their post-processing only (min-max, resize, min-max).
RECIPRO_PROGRAM = "cam {name}(recipro: [h,w]) = recipro"


def placements(h: int, w: int, gaussian: bool, device, dtype) -> torch.Tensor:
    """`[h·w, h, w]`: for copy (i, j) (index i·w + j) the weight of position (x, y): 1 at (i, j) and
    0 elsewhere, or the 3×3 Gaussian kernel centred on (i, j), cut at the borders."""
    one_hot = torch.eye(h * w, device=device, dtype=torch.float32).reshape(h * w, 1, h, w)
    if gaussian:
        kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], device=device) / 16
        one_hot = torch.nn.functional.conv2d(one_hot, kernel.view(1, 1, 3, 3), padding=1)
    return one_hot[:, 0].to(dtype)


def mosaic(a: torch.Tensor, placement: torch.Tensor) -> torch.Tensor:
    """The copies `[g·h·w, k, h, w]` of `a` `[g, k, h, w]`: copy (image, p) carries the channel
    vector of position p weighted by `placement[p]`."""
    g, k, h, w = a.shape
    vectors = a.reshape(g, k, h * w).transpose(1, 2)  # [g, hw, k]
    copies = vectors[:, :, :, None, None] * placement[None, :, None, :, :]
    return copies.reshape(g * h * w, k, h, w)


def recipro_scores(copy_outputs: torch.Tensor, classes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Each image's `[h, w]` map from the model outputs of its copies `[n·h·w, classes]`: the softmax
    probability of the image's class, min-max normalized over (h, w) (no epsilon; 0 where constant)."""
    n = classes.shape[0]
    p = torch.softmax(copy_outputs.detach().float(), dim=-1).reshape(n, h * w, -1)
    scores = p.gather(2, classes.reshape(n, 1, 1).expand(n, h * w, 1).to(p.device)).squeeze(2)
    lo = scores.amin(dim=1, keepdim=True)
    span = scores.amax(dim=1, keepdim=True) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (scores - lo) / safe, torch.zeros_like(scores)).reshape(n, h, w)


def reciprocam_scores(model, tap, x: torch.Tensor, classes, gaussian: bool = False,
                      batch_size: int = 256) -> torch.Tensor:
    """Recipro-CAM's min-max normalized scores `[n, h, w]` for the model input `x` and int
    `classes`, on their own (the exporter's `--recipro`): the model runs on groups of images
    whose copies fit `batch_size` inputs, `tap`'s layer output replaced by its copies (the layer
    must return `[n, k, h, w]`). camc.torch.CAM does the same within its own forward pass."""
    n = x.shape[0]
    classes = torch.as_tensor(classes, dtype=torch.int64).reshape(-1)
    shape = {}

    def copies(output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 4:
            raise ValueError(f"Recipro-CAM needs a layer output [n, k, h, w], got {list(output.shape)}")
        shape["hw"] = output.shape[2:]
        return mosaic(output, placements(*output.shape[2:], gaussian, output.device, output.dtype))

    out, start, per_image = [], 0, None
    tap.replace = copies
    try:
        with torch.no_grad():
            while start < n:
                g = 1 if per_image is None else max(1, batch_size // per_image)
                logits = model(x[start:start + g])
                h, w = shape["hw"]
                out.append(recipro_scores(logits, classes[start:start + g], h, w))
                per_image = h * w
                start += g
    finally:
        tap.replace = None
    return torch.cat(out)
