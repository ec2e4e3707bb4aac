"""Running the `camc` command line from the Python tests: the reference camc.compile is checked
against. Not a test module (unittest discovery with -p 'test_*' skips it)."""

import os
import subprocess
import tempfile
import unittest
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def camc_binary():
    """The most recently built `target/{release,debug}/camc` (the one closest to the sources the
    native module was built from); skips the calling test when neither exists."""
    built = [ROOT / "target" / build / "camc" for build in ("release", "debug")]
    built = [path for path in built if path.exists()]
    if not built:
        raise unittest.SkipTest("no target/{release,debug}/camc: cargo build first")
    return str(max(built, key=lambda path: path.stat().st_mtime_ns))


def cli(*args, cwd=None):
    """Runs `camc ARGS...` without colours; returns (exit status, stdout, stderr)."""
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run([camc_binary(), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


def write_cache(directory, tensors):
    """An .npy cache directory holding `tensors` (name -> NumPy array)."""
    cache = Path(directory) / "cache"
    cache.mkdir()
    for name, value in tensors.items():
        np.save(cache / f"{name}.npy", np.ascontiguousarray(value))
    return cache


def cli_maps(program, tensors, extra=(), backend="cpu"):
    """`camc run PROGRAM --backend BACKEND EXTRA...` on an .npy cache of `tensors`: the maps it
    writes. The CPU backend by default: the one camc.compile runs NumPy and torch CPU inputs on
    (`auto` would pick CUDA on a machine with a GPU)."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = write_cache(tmp, tensors)
        out = Path(tmp) / "maps.npy"
        status, _, stderr = cli("run", program, "--cache", cache, "-o", out, "--backend", backend, *extra)
        if status != 0:
            raise AssertionError(f"camc run {program} {' '.join(map(str, extra))} failed ({status}):\n{stderr}")
        return np.load(out)


def cli_error(*args, cwd=None):
    """The error `camc ARGS...` prints (it must fail with status 1), without the `Error: `
    prefix of its first line and the final newline."""
    status, _, stderr = cli(*args, cwd=cwd)
    if status != 1:
        raise AssertionError(f"camc {' '.join(map(str, args))} exited with {status}, not 1:\n{stderr}")
    text = stderr.rstrip("\n")
    return text[len("Error: "):] if text.startswith("Error: ") else text
