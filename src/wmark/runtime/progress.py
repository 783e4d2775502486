"""The one progress bar of wmark: tqdm on stderr with rate and ETA (tqdm imported on use)."""
from __future__ import annotations

import os
import sys
from typing import Any


def progress(total: int | None, desc: str, enabled: bool = True, *, unit: str = "it", **kw: Any) -> Any:
    """A tqdm bar on stderr with rate and ETA, redrawn at most every 2 s, for benchmarks, training,
    loops and batch commands; a silent bar (same methods) where not ``enabled`` (``--no-progress``)
    or where the environment sets ``TQDM_DISABLE=1``. ``iterable=`` makes it iterate; use it as a
    context manager; ``bar.write(line)`` prints a line without breaking the bar."""
    from tqdm import tqdm

    quiet = os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet or not enabled, mininterval=2.0,
                dynamic_ncols=True, **kw)
