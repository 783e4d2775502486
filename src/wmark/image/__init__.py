"""Neural image watermark: embed, detect and strip at any resolution (lazy: torch loads on first use).

    from wmark.image import load
    wm = load()                      # shipped weights, sha256-verified
    marked = wm.embed(img, key, payload="0102030405ff").images
    det = wm.detect(marked, key)     # Detection(detected, p_value, payload, ...)
    clean = wm.strip(marked, key).images
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ImageWatermarker": "wmark.image.model", "Detection": "wmark.image.model", "Embedded": "wmark.image.model",
    "Stripped": "wmark.image.model", "Config": "wmark.image.model", "load": "wmark.image.model",
    "embed": "wmark.image.model", "detect": "wmark.image.model", "strip": "wmark.image.model",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'wmark.image' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


def __dir__() -> list[str]:
    return sorted(__all__)
