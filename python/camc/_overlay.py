"""Heatmap overlays: `camc.show_cam_on_image`, pytorch-grad-cam's function without OpenCV.

NumPy only (no cv2, no matplotlib, no torch). The colormap is OpenCV's COLORMAP_JET, computed
here: OpenCV's table is MATLAB's jet sampled at 256 points,
`r, g, b = clip(1.5 - |4x - c|, 0, 1)` for c = 3, 2, 1 and x = i / 255, rounded to 8 bits
(half to even); one entry differs from that rounding in OpenCV's float table and is set as
OpenCV has it. The result equals `cv2.applyColorMap(..., cv2.COLORMAP_JET)` for every input.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from ._errors import InputError, InputTypeError

__all__ = ["show_cam_on_image", "COLORMAP_JET"]

COLORMAP_JET = 2
"""`cv2.COLORMAP_JET`'s value: `show_cam_on_image(..., colormap=camc.COLORMAP_JET)` or `"jet"`."""


def _jet_bgr() -> np.ndarray:
    i = np.arange(256, dtype=np.float64)[:, None]
    c = np.array([1.0, 2.0, 3.0])[None, :]  # blue, green, red: BGR as OpenCV returns it
    # 255 * (1.5 - |4 i/255 - c|) = 382.5 - |4 i - 255 c|: exact in float64 (halves).
    v = np.clip(382.5 - np.abs(4.0 * i - 255.0 * c), 0.0, 255.0)
    lut = np.round(v).astype(np.uint8)
    lut[159, 0] = 1  # blue at 159 is exactly 1.5; OpenCV's float table rounds it down
    lut.setflags(write=False)
    return lut


_JET_BGR = _jet_bgr()


def _as_array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception:
        raise InputTypeError(f"{name} must be a NumPy array (or a tensor), got {type(x).__name__}") from None


def _lut(colormap: Union[int, str, np.ndarray]) -> np.ndarray:
    if isinstance(colormap, str):
        if colormap.lower() == "jet":
            return _JET_BGR
    elif isinstance(colormap, (int, np.integer)) and not isinstance(colormap, bool):
        if int(colormap) == COLORMAP_JET:
            return _JET_BGR
    elif isinstance(colormap, np.ndarray):
        lut = colormap
        if lut.dtype == np.uint8 and lut.shape in ((256, 3), (256, 1, 3)):
            return lut.reshape(256, 3)
        raise InputError(
            f"a colormap table must be uint8 of shape (256, 3) or (256, 1, 3) (BGR, as cv2's user "
            f"colormaps), got {lut.dtype} {lut.shape}"
        )
    raise InputError(
        f"colormap {colormap!r}: camc draws cv2.COLORMAP_JET (2, or \"jet\") or a (256, 3) uint8 BGR "
        "table; for other OpenCV colormaps pass cv2.applyColorMap(np.arange(256, dtype=np.uint8), "
        "cv2.COLORMAP_...)[:, 0] as the table"
    )


def show_cam_on_image(
    img: np.ndarray,
    mask: np.ndarray,
    use_rgb: bool = False,
    colormap: Union[int, str, np.ndarray] = COLORMAP_JET,
    image_weight: float = 0.5,
) -> np.ndarray:
    """Overlays a CAM on an image, as `pytorch_grad_cam.utils.image.show_cam_on_image`.

    - `img`: float image `[H, W, 3]` in [0, 1] (RGB or BGR);
    - `mask`: the map `[H, W]` in [0, 1] (one image of a CAM's output: `maps[i]`);
    - `use_rgb`: the heatmap in RGB (set it when `img` is RGB); default BGR, as OpenCV;
    - `colormap`: `camc.COLORMAP_JET` (cv2.COLORMAP_JET, the default), `"jet"`, or a `(256, 3)`
      uint8 BGR lookup table;
    - `image_weight`: the result is `image_weight * img + (1 - image_weight) * heatmap`.

    Returns uint8 `[H, W, 3]`: `uint8(255 * cam / max(cam))`, the heatmap being the colormap of
    `uint8(255 * mask)`. Tensors are accepted and read on the host. Errors (`camc.InputError`):
    an image above 1, `image_weight` outside [0, 1], a mask that is not 2-D.
    """
    img = _as_array(img, "img")
    mask = _as_array(mask, "mask")
    if mask.ndim != 2:
        raise InputError(
            f"mask has shape {list(mask.shape)}; expected one map [H, W] (index a batch: maps[i])"
        )
    lut = _lut(colormap)
    heatmap = lut[np.uint8(255 * mask)]
    if use_rgb:
        heatmap = heatmap[..., ::-1]
    heatmap = np.float32(heatmap) / 255

    if np.max(img) > 1:
        raise InputError("The input image should np.float32 in the range [0, 1]")
    if image_weight < 0 or image_weight > 1:
        raise InputError(f"image_weight should be in the range [0, 1]. Got: {image_weight}")
    if img.shape[:2] != mask.shape:
        raise InputError(f"img has shape {list(img.shape)} but mask {list(mask.shape)}; they must share H, W")

    cam = (1 - image_weight) * heatmap + image_weight * img
    cam = cam / np.max(cam)
    return np.uint8(255 * cam)
