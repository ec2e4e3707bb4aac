"""The model: loading it (--model, --weights, --model-seed), naming its layers, finding its head."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from .base import ExportError


def load_model(
    spec: str, weights: Optional[str] = None, kwargs: Optional[dict] = None, seed: Optional[int] = None
) -> nn.Module:
    """`pkg.module:callable`, `path/file.py:callable`, or a `.pt` file holding a whole module.
    With `seed`, `torch.manual_seed(seed)` runs right before the model is built, so that a
    model with random weights comes out the same every time."""
    kwargs = kwargs or {}
    if ":" in spec and not os.path.exists(spec):
        mod_name, _, attr = spec.rpartition(":")
        if mod_name.endswith(".py"):
            if not os.path.exists(mod_name):
                raise ExportError(f"--model {spec}: no such file {mod_name}")
            name = "_camc_model_" + Path(mod_name).stem
            sp = importlib.util.spec_from_file_location(name, mod_name)
            module = importlib.util.module_from_spec(sp)
            sys.modules[name] = module
            sys.path.insert(0, str(Path(mod_name).resolve().parent))
            try:
                sp.loader.exec_module(module)
            finally:
                sys.path.pop(0)
        else:
            try:
                module = importlib.import_module(mod_name)
            except ImportError as e:
                raise ExportError(f"--model {spec}: cannot import {mod_name} ({e})")
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                close = difflib.get_close_matches(part, dir(obj), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ExportError(f"--model {spec}: {mod_name} has no attribute {part}{hint}")
            obj = getattr(obj, part)
        if seed is not None:
            torch.manual_seed(seed)
        model = obj if isinstance(obj, nn.Module) else obj(**kwargs)
    elif spec.endswith((".pt", ".pth")):
        if not os.path.exists(spec):
            raise ExportError(f"--model {spec}: no such file")
        if seed is not None:
            torch.manual_seed(seed)
        try:
            model = torch.load(spec, map_location="cpu", weights_only=False)
        except Exception as e:
            raise ExportError(f"--model {spec}: cannot load ({type(e).__name__}: {e})")
    else:
        raise ExportError(
            f"--model {spec}: expected MODULE:CALLABLE (torchvision.models:resnet18), "
            "FILE.py:CALLABLE, or a .pt file holding a whole nn.Module"
        )
    if not isinstance(model, nn.Module):
        raise ExportError(f"--model {spec}: gave a {type(model).__name__}, not an nn.Module")
    if weights:
        load_weights(model, weights)
    return model


def load_weights(model: nn.Module, path: str) -> None:
    """Load a state dict (.safetensors, or .pt/.pth, plain or {"state_dict": ...}) strictly."""
    path = str(path)
    if not os.path.exists(path):
        raise ExportError(f"--weights {path}: no such file")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(path)
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
                sd = sd["state_dict"]
    except Exception as e:
        raise ExportError(f"--weights {path}: cannot read ({type(e).__name__}: {e})")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise ExportError(f"--weights {path}: does not fit the model: " + " ".join(m.strip() for m in msg[:4]))


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """model.get_submodule(name), or an error that lists close names."""
    names = [n for n, _ in model.named_modules() if n]
    try:
        return model.get_submodule(name)
    except (AttributeError, KeyError, IndexError, ValueError):
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        if not close:
            # same last component, or a prefix match
            last = name.split(".")[-1]
            close = [n for n in names if n.split(".")[-1] == last][:5] or [
                n for n in names if n.startswith(name)
            ][:5]
        hint = f"; close names: {', '.join(close)}" if close else ""
        tops = [n for n in names if "." not in n]
        raise ExportError(
            f"--layer {name}: the model has no such module{hint} (top-level modules: {', '.join(tops[:12])})"
        )


def split_layer_names(values: Sequence[str]) -> List[str]:
    """--layer given several times and/or as comma lists, in order."""
    out = []
    for v in values:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def resolve_layers(model: nn.Module, layers) -> List[Tuple[str, nn.Module]]:
    """Target layers as (module name, module): names (comma lists allowed) or the modules
    themselves (named as in `model.named_modules()`); one or a list. Duplicates are an error."""
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    try:
        layers = list(layers)
    except TypeError:
        raise ExportError(f"target_layers: expected module names or modules, got {type(layers).__name__}")
    by_id = None
    out: List[Tuple[str, nn.Module]] = []
    for spec in layers:
        if isinstance(spec, nn.Module):
            if by_id is None:
                by_id = {}
                for n, m in model.named_modules():
                    by_id.setdefault(id(m), n)
            name = by_id.get(id(spec))
            if not name:
                raise ExportError(
                    f"target layer {type(spec).__name__}: is not a submodule of the model"
                    + (" (it is the model itself)" if spec is model else "")
                )
            out.append((name, spec))
        elif isinstance(spec, str):
            for name in split_layer_names([spec]):
                out.append((name, resolve_layer(model, name)))
        else:
            raise ExportError(f"target layer {spec!r}: expected a module name or an nn.Module")
    if not out:
        raise ExportError("--layer: no layer given")
    seen = set()
    for name, _ in out:
        if name in seen:
            raise ExportError(f"--layer {name}: given twice")
        seen.add(name)
    return out
