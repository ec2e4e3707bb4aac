"""Progress bars of long calls: tqdm's, shown when stderr is a terminal (or when asked)."""

from __future__ import annotations

import sys
from typing import Optional


def progress_bar(total: Optional[int], unit: str, desc: str, show: Optional[bool]):
    """A tqdm bar, or None when `show` is False (None: whether stderr is a terminal) or tqdm is
    not installed."""
    if show is None:
        show = sys.stderr.isatty()
    if not show:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit=unit, desc=desc, leave=False)
