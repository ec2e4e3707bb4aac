"""`camc.compile` and `camc.Program`: a CAM program run on NumPy arrays or torch tensors.

The native module (`camc._camc`) checks, compiles and runs; this module sorts a call's
arguments into tensors and scalars, hands host tensors over without a copy (torch CPU tensors
as NumPy views of the same memory) and CUDA tensors by address on torch's current stream, and
gives the result back in the kind and on the device of the inputs.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _camc
from ._errors import DeviceError, InputError, InputTypeError

_HOST_DTYPES = ("float32", "float16", "int64", "int32")
_TORCH_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")
# The largest side of a map camc computes (8192 x 8192 values at most; docs/run.md).
_MAX_SIDE = 1 << 26


def _is_torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _dtype_name(value: Any) -> str:
    return str(value.dtype).replace("torch.", "")


def _size(size: Any) -> Optional[List[int]]:
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or not isinstance(size, Sequence):
        raise InputTypeError(f"size must be a tuple (H, W) (or (D, H, W)), got {type(size).__name__}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
        raise InputTypeError(f"size must hold integers, got {tuple(size)!r}")
    if any(s < 1 for s in size):
        raise InputError(f"size {tuple(size)!r}: every side must be at least 1")
    if any(s > _MAX_SIDE for s in size):
        raise InputError(f"size {tuple(size)!r}: a side is at most {_MAX_SIDE}")
    return [int(s) for s in size]


def _ints(value: Any, what: str, lengths: Sequence[int]) -> Optional[List[int]]:
    """`value` as a list of `lengths` positive integers (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputTypeError(f"{what} must be a tuple of integers, got {type(value).__name__}")
    if len(value) not in lengths or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise InputError(f"{what} {tuple(value)!r}: give {' or '.join(str(n) for n in lengths)} integers")
    if any(not 1 <= v <= _MAX_SIDE for v in value):
        raise InputError(f"{what} {tuple(value)!r}: each must be between 1 and {_MAX_SIDE}")
    return [int(v) for v in value]


class Program:
    """A compiled CAM program. Call it with the tensors and scalars its `cam` reads, by name.

    >>> prog = camc.compile("gradcampp")
    >>> prog.params
    [('A', '[k,h,w]'), ('G', '[k,h,w]'), ('eps', '[]')]
    >>> maps = prog(A=a, G=g)                    # raw maps [n,h,w], as `camc run --raw`
    >>> maps = prog(A=a, G=g, size=(224, 224))   # min-max, bilinear resize, min-max
    >>> maps = prog(A=a, G=g, eps=1e-5)          # scalar parameters by keyword

    Tensors are NumPy arrays or torch tensors (float32, float16, bfloat16 from torch; integer
    tensors such as `target` as int64/int32), each with the images first (`[n,k,h,w]`,
    `[n,k]`, `[n]`, `[n,k,d,h,w]`), contiguous. They are read in place, never copied. The
    result is float32 of the same kind: a NumPy array for NumPy inputs, a torch tensor on the
    inputs' device for torch inputs; CUDA inputs are computed by the fused CUDA kernel on
    torch's current stream, and the result stays on the GPU.
    """

    def __init__(self, native: "_camc.Program"):
        self._native = native
        self._scalars = {name for name, _ in native.scalars}

    @property
    def name(self) -> str:
        """The name of the `cam` the program runs."""
        return self._native.name

    @property
    def params(self) -> List[Tuple[str, str]]:
        """The `cam`'s parameters as `(name, type)`, e.g. `("A", "[k,h,w]")`; `"[]"` is a scalar."""
        return self._native.params

    def __call__(self, *, size: Optional[Sequence[int]] = None, **arguments: Any):
        """The maps: `[n,h,w]` raw, or `[n,H,W]` post-processed when `size=(H, W)` is given.

        Raises `camc.InputError` (missing, mis-shaped, non-contiguous or mixed-device tensors),
        `camc.InputTypeError` (a value of the wrong type), `camc.DeviceError` (CUDA tensors
        without a usable GPU or CUDA libraries).
        """
        wanted = _size(size)
        knobs: Dict[str, float] = {}
        tensors: Dict[str, Any] = {}
        for name, value in arguments.items():
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            tensor = isinstance(value, np.ndarray) or _is_torch_tensor(value)
            if tensor:
                # A scalar parameter may also take one value per image, `[n]`, like a cache's.
                tensors[name] = value
            elif name in self._scalars:
                if not number:
                    raise InputTypeError(
                        f"`{name}` is a scalar parameter of `{self.name}`: pass a number "
                        f"(or one per image, an array [n]), got {type(value).__name__}"
                    )
                knobs[name] = float(value)
            elif number:
                raise InputTypeError(
                    f"`{name}` is not a scalar parameter of `{self.name}`; its parameters: {self._signature()}"
                )
            else:
                raise InputTypeError(
                    f"`{name}` must be a NumPy array or a torch tensor, got {type(value).__name__}"
                )
        kinds = {("torch" if _is_torch_tensor(v) else "numpy") for v in tensors.values()}
        if len(kinds) > 1:
            raise InputError("the tensors mix NumPy arrays and torch tensors: pass one kind")
        if "torch" not in kinds:
            return self._run_host(tensors, [], wanted, knobs)
        devices = {str(t.device) for t in tensors.values()}
        if len(devices) > 1:
            where = ", ".join(f"`{n}` on {t.device}" for n, t in sorted(tensors.items()))
            raise InputError(f"the tensors are on different devices ({where}); move them to one")
        device = next(iter(tensors.values())).device
        if device.type not in ("cpu", "cuda"):
            raise DeviceError(f"camc computes on the CPU or a CUDA GPU; the tensors are on {device}")
        import torch

        if torch.is_grad_enabled() and any(t.requires_grad for t in tensors.values()):
            from ._autograd import differentiable

            return differentiable(self, tensors, wanted, knobs)
        return self._run_torch(tensors, wanted, knobs)

    def _run_torch(self, tensors: Dict[str, Any], size, knobs, grad: Optional[str] = None):
        """The maps of torch tensors on one device (or with `grad`, the backward kernel's result:
        the gradient of `Σ tensors["@out_grad"] · map` with respect to input `grad`, per image)."""
        device = next(iter(tensors.values())).device
        if device.type == "cuda":
            return self._run_cuda(tensors, device, size, knobs, grad)
        return self._run_torch_cpu(tensors, size, knobs, grad)

    def _signature(self) -> str:
        return f"{self.name}(" + ", ".join(f"{n}: {t}" for n, t in self.params) + ")"

    def _run_host(self, arrays: Dict[str, np.ndarray], bf16: List[str], size, knobs, grad: Optional[str] = None):
        for name, array in arrays.items():
            if name not in bf16 and str(array.dtype) not in _HOST_DTYPES:
                raise InputTypeError(
                    f"`{name}` has dtype {array.dtype}; camc reads float32 or float16 arrays "
                    f"(bfloat16 from torch; integers for class indices): convert with .astype(np.float32)"
                )
        maps, nonfinite = self._native.run_host(arrays, bf16, size, knobs, grad)
        if nonfinite:
            warnings.warn(
                f"camc: {self.name}: {nonfinite} non-finite values in the maps were set to 0",
                RuntimeWarning,
                stacklevel=3,
            )
        return maps

    def _run_torch_cpu(self, tensors: Dict[str, Any], size, knobs, grad: Optional[str] = None):
        import torch

        arrays: Dict[str, np.ndarray] = {}
        bf16: List[str] = []
        for name, t in tensors.items():
            _check_torch(name, t)
            t = t.detach()
            if t.dtype == torch.bfloat16:
                arrays[name] = t.view(torch.int16).numpy().view(np.uint16)
                bf16.append(name)
            else:
                arrays[name] = t.numpy()
        return torch.from_numpy(self._run_host(arrays, bf16, size, knobs, grad))

    def _run_cuda(self, tensors: Dict[str, Any], device, size, knobs, grad: Optional[str] = None):
        import torch

        if device.index not in (None, 0):
            raise DeviceError(
                f"camc computes on the first GPU (cuda:0); the tensors are on {device}: "
                "make it the first visible one (CUDA_VISIBLE_DEVICES)"
            )
        given = {}
        for name, t in tensors.items():
            _check_torch(name, t)
            given[name] = (t.data_ptr(), _dtype_name(t), list(t.shape))
        shapes = {name: shape for name, (_, _, shape) in given.items()}
        out = torch.empty(self._native.result_shape(shapes, size, knobs, grad), dtype=torch.float32, device=device)
        stream = torch.cuda.current_stream(device).cuda_stream
        self._native.run_device(given, out.data_ptr(), size, knobs, stream, grad)
        if size is None and grad is None:
            torch.nan_to_num_(out, nan=0.0, posinf=0.0, neginf=0.0)
        return out

    def emit(
        self,
        target: str = "ir",
        *,
        dims: Optional[Sequence[int]] = None,
        size: Optional[Sequence[int]] = None,
        arch: str = "sm_75",
        **scalars: float,
    ) -> str:
        """The compiled form as text, as `camc emit` prints it: `"ir"` (the optimized IR),
        `"clif"` (the CPU kernel's Cranelift IR for `dims` = (k, h, w), with the post-processing
        to `size` fused in when given), `"cuda"` (CUDA C) or `"ptx"` (NVRTC, for `arch`)."""
        if not isinstance(target, str) or not isinstance(arch, str):
            raise InputTypeError("emit(target, arch=...) take strings")
        for name, value in scalars.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InputTypeError(f"`{name}` is a scalar parameter: pass a number, got {type(value).__name__}")
        dims = _ints(dims, "dims", (3, 4))
        size = _ints(size, "size", (2,))
        return self._native.emit(target, dims, None if size is None else tuple(size), arch, scalars)

    def __repr__(self) -> str:
        return f"camc.Program({self._signature()})"


def _check_torch(name: str, t: Any) -> None:
    if _dtype_name(t) not in _TORCH_DTYPES:
        raise InputTypeError(
            f"`{name}` has dtype {t.dtype}; camc reads float32, float16 or bfloat16 tensors "
            "(integers for class indices): convert with .float()"
        )
    if not t.is_contiguous():
        raise InputError(f"`{name}` is not contiguous; pass x.contiguous()")


_compiled: Dict[Tuple, Program] = {}
_lock = threading.Lock()


def compile(program: str) -> Program:
    """Compiles a CAM program: a stdlib method name (`"gradcampp"`), a `.cam` file
    (`"my.cam"`, or `"my.cam:name"` for one `cam` of several), or the source text itself.

    Programs are cached in the process: compiling the same name, file (unchanged) or text again
    returns the same `Program`, and a `Program` keeps its kernels for the sizes it has seen.
    Raises `camc.ProgramError` with the diagnostics when the source does not check.
    """
    if not isinstance(program, str):
        raise InputTypeError(f"camc.compile takes a str (a method, a .cam path or source), got {type(program).__name__}")
    key: Tuple = (program,)
    path = program.rsplit(":", 1)[0] if ".cam:" in program else program
    if "\n" not in program and os.path.isfile(path):
        stat = os.stat(path)
        key = (program, os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _compiled.get(key)
    if cached is not None:
        return cached
    compiled = Program(_camc.compile(program))
    with _lock:
        if len(_compiled) > 256:
            _compiled.clear()
        return _compiled.setdefault(key, compiled)
