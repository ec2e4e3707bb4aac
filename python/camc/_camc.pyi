"""Type stubs of the native module `camc._camc` (python/src). Use `camc.compile` and
`camc.Program`; this module is their implementation."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

class Program:
    """A resolved, checked program; `camc.Program` wraps it."""

    @property
    def name(self) -> str: ...
    @property
    def params(self) -> List[Tuple[str, str]]: ...
    @property
    def scalars(self) -> List[Tuple[str, Optional[float]]]: ...
    def result_shape(
        self, shapes: Dict[str, Sequence[int]], size: Optional[Sequence[int]], knobs: Dict[str, float]
    ) -> List[int]: ...
    def run_host(
        self,
        tensors: Dict[str, np.ndarray],
        bf16: List[str],
        size: Optional[Sequence[int]],
        knobs: Dict[str, float],
    ) -> Tuple[npt.NDArray[np.float32], int]: ...
    def run_device(
        self,
        tensors: Dict[str, Tuple[int, str, Sequence[int]]],
        out: int,
        size: Optional[Sequence[int]],
        knobs: Dict[str, float],
        stream: int,
    ) -> None: ...
    def emit(
        self,
        target: str,
        dims: Optional[Sequence[int]] = None,
        size: Optional[Tuple[int, int]] = None,
        arch: str = "sm_75",
        knobs: Optional[Dict[str, float]] = None,
    ) -> str: ...

def compile(spec: str) -> Program: ...
def stdlib_source(name: str) -> Optional[str]: ...
