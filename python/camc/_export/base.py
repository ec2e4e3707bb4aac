"""What every part of the exporter shares: its error type and constants."""

from __future__ import annotations

import torch

from .._errors import InputError

PROG = "camc.export"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


class ExportError(InputError):
    """A user mistake (bad file, bad layer name, counts that disagree). The command line
    prints the message and exits 1; `camc.export.export` raises it. A `camc.InputError`."""
