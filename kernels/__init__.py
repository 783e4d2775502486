"""Triton GPU kernels, each beside its pure-torch reference in wmark (shipped as wmark.kernels).

Importing this package is light: triton is imported only by the kernel modules (``wmark.kernels.kgw``)
and the lazy names below.

    kgw_bias_triton(scores [B, V], c [B], t [V], threshold, delta, u [V]?, a [B]?) -> [B, V]
    kgw_green_triton(c [B], t [V], threshold, u [V]?, a [B]?) -> bool [B, V]
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["triton_available", "kgw_bias_triton", "kgw_green_triton"]


def triton_available() -> bool:
    """True where triton imports and can run: a CUDA device, or the interpreter (TRITON_INTERPRET=1)."""
    try:
        import triton  # noqa: F401
    except Exception:  # not installed, or a broken install: unavailable
        return False
    if os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on"):
        return True
    import torch

    return torch.cuda.is_available()


def __getattr__(name: str) -> Any:
    if name in ("kgw_bias_triton", "kgw_green_triton"):
        from wmark.kernels import kgw

        return getattr(kgw, name)
    raise AttributeError(f"module 'wmark.kernels' has no attribute {name!r}")
