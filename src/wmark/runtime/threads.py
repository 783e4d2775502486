"""Torch's CPU thread count for one run: results depend on it in the last bits, so trainers and loops
pin it and give the caller's setting back afterwards."""
from __future__ import annotations

from typing import Callable


def set_threads(threads: int | None) -> Callable[[], None]:
    """Set torch's CPU threads (None: leave them); returns the function that restores them."""
    if threads is None:
        return lambda: None
    import torch

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    return lambda: torch.set_num_threads(prev)
