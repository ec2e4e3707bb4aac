"""Type stubs of the native module `camc._camc` (python/src). Use `camc.compile` and
`camc.Program`; this module is their implementation."""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

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
def search(
    cache: str,
    out: str,
    metric: str,
    better: str,
    scorer: Callable[[int, npt.NDArray[np.float32]], Sequence[Optional[float]]],
    size: Tuple[int, int],
    budget: int = 200,
    holdout: float = 0.3,
    seed: int = 0,
    resume: bool = False,
    force: bool = False,
    keep: int = 5,
    space: Optional[str] = None,
    max_size: Optional[int] = None,
    batch: int = 32,
    progress: Optional[Callable[[int, int, Optional[str]], None]] = None,
) -> str:
    """`camc search` with the maps scored by `scorer(first, maps)`: `maps` is a [count, H, W]
    float32 array (`size` = (H, W), values in [0, 1]) of images first..first+count, at most
    `batch` of them; it returns one float or None (not scored) per image. Candidates rank by
    the mean over the training images, in the direction `better` ("higher" or "lower"); a
    non-finite mean counts as no value. `metric` names what the scorer computes (model, metric,
    images): `resume=True` reuses checkpointed results only under the same name. Writes
    out/rank-NN.cam, out/report.json and out/checkpoint.jsonl; returns the summary `camc search`
    prints. An exception in `scorer` or `progress(done, total, best_weights)` stops the search
    and is raised as is; what was checkpointed stays for `resume=True`."""

__version__: str

# One row of `camc eval --json` without its program: (metric, value, better, images, skipped).
ValueRow = Tuple[str, Optional[float], str, int, int]

class CacheMetrics:
    """Accumulators of `camc eval`'s cache metrics (loc, iou, pointing, energy, complexity) fed
    with maps computed in Python, batch after batch. `camc.InputError` for a metric the maps
    (and boxes, with `has_boxes`) cannot feed."""

    def __init__(self, names: Sequence[str], has_boxes: bool) -> None: ...
    def add(
        self, maps: npt.NDArray[np.float32], boxes: Optional[Sequence[Sequence[Sequence[float]]]] = None
    ) -> List[List[Optional[float]]]:
        """Scores `maps` [n, H, W] (with one list of [x0, y0, x1, y1] boxes per image) and returns,
        per row of `rows()`, each image's value (None: skipped)."""
    def row_counts(self) -> List[int]:
        """How many rows each metric gives, in order (`loc`: 2)."""
    def rows(self) -> List[ValueRow]: ...

def write_eval_report(
    dir: str,
    title: str,
    provenance: Sequence[Tuple[str, str]],
    methods: Sequence[str],
    maps: npt.NDArray[np.float32],
    rows: Sequence[Tuple[str, Sequence[ValueRow]]],
    images: Optional[npt.NDArray[np.uint8]] = None,
    boxes: Optional[Sequence[Sequence[Sequence[float]]]] = None,
    captions: Sequence[Optional[str]] = ...,
    hovers: Sequence[Sequence[str]] = ...,
) -> str:
    """`camc eval --report`'s page in `dir` (which must exist): the metric table, and overlays of
    `maps` [methods, n, H, W] over `images` [n, 3, H, W]; returns the page's path."""
