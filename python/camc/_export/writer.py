"""Where the caches go (one file, or shards, per layer) and the safetensors writer."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .base import ExportError

SUFFIX = ".safetensors"


def layer_file_name(layer: str) -> str:
    """A module name as a file name: `features.relu3` stays `features.relu3`; characters other
    than letters, digits, `.`, `_` and `-` become `_`."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer) or "_"


def layer_outputs(out: str, layers: List[str], shard_size: Optional[int]) -> Dict[str, str]:
    """The cache path of each layer.

    One layer: OUT itself (a .safetensors file; with --shard-size a folder of shards).
    Several layers, OUT ending in `.safetensors`: a stem, `STEM.LAYER.safetensors` per layer
      (with --shard-size the folder `STEM.LAYER/`).
    Several layers, any other OUT: a folder, `OUT/LAYER.safetensors` per layer
      (with --shard-size the folder `OUT/LAYER/`).
    """
    out = str(out)
    if len(layers) == 1:
        return {layers[0]: out}
    p = Path(out)
    res = {}
    if p.name.endswith(SUFFIX):
        stem = p.name[: -len(SUFFIX)]
        for layer in layers:
            name = f"{stem}.{layer_file_name(layer)}"
            res[layer] = str(p.with_name(name if shard_size is not None else name + SUFFIX))
    else:
        if p.exists() and not p.is_dir():
            raise ExportError(
                f"-o {out}: with several layers, the output is a folder (one cache per layer) "
                "or a stem ending in .safetensors, and this is a file"
            )
        for layer in layers:
            name = layer_file_name(layer)
            res[layer] = str(p / (name if shard_size is not None else name + SUFFIX))
    if len(set(res.values())) != len(res):
        raise ExportError(f"--layer: {', '.join(layers)} give the same file name")
    return res


def perturbed_path(out: str, shard_size: Optional[int]) -> str:
    """OUT.safetensors -> OUT_perturbed.safetensors; a shard folder OUT -> OUT_perturbed."""
    p = Path(out)
    if shard_size is not None:
        return str(p.with_name(p.name + "_perturbed"))
    stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.name
    return str(p.with_name(stem + "_perturbed" + SUFFIX))


def check_output(out: str, shard_size: Optional[int]) -> None:
    """Refuse an output of the wrong kind before anything is computed or written."""
    p = Path(out)
    if shard_size is not None:
        if p.exists() and not p.is_dir():
            raise ExportError(f"-o {out}: with --shard-size, the output is a folder, and this is a file")
    elif p.is_dir():
        raise ExportError(f"-o {out}: is a folder; give a .safetensors file (or use --shard-size)")


class CacheWriter:
    """Collects rows of per-image tensors and writes one file, or shards of `shard_size`."""

    def __init__(self, out: str, shard_size: Optional[int], shared: Dict[str, torch.Tensor], metadata):
        self.out = Path(out)
        self.shard_size = shard_size
        self.shared = shared
        self.metadata = metadata
        self.rows: Dict[str, List[torch.Tensor]] = {}
        self.pending = 0
        self.written: List[str] = []
        check_output(out, shard_size)
        if shard_size is not None:
            self.out.mkdir(parents=True, exist_ok=True)
        elif self.out.parent and not self.out.parent.exists():
            self.out.parent.mkdir(parents=True, exist_ok=True)

    def add(self, batch: Dict[str, torch.Tensor]):
        n = None
        for k, v in batch.items():
            self.rows.setdefault(k, []).append(v)
            n = v.shape[0]
        self.pending += n
        while self.shard_size is not None and self.pending >= self.shard_size:
            self._flush(self.shard_size)

    def _flush(self, count: int):
        cat = {k: torch.cat(v) for k, v in self.rows.items()}
        now = {k: v[:count].contiguous() for k, v in cat.items()}
        rest = {k: v[count:] for k, v in cat.items()}
        self.rows = {k: [v] for k, v in rest.items()}
        self.pending -= count
        if self.shard_size is None:
            path = self.out
        else:
            path = self.out / f"cache-{len(self.written):05d}{SUFFIX}"
        self._write(path, now)

    def _write(self, path: Path, tensors: Dict[str, torch.Tensor]):
        from safetensors.torch import save_file

        tensors = dict(tensors)
        tensors.update(self.shared)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=self.metadata)
        os.replace(tmp, path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(path, 0o666 & ~umask)  # safetensors creates 0600 files
        self.written.append(str(path))

    def finish(self) -> List[str]:
        if self.pending > 0:
            self._flush(self.pending)
        return self.written
