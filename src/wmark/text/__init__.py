"""Statistical text watermarks: KGW (lefthash / selfhash / minhash), Unigram, Gumbel, tournament.

Lazy: ``from wmark.text import KGW`` imports torch only then.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TextWatermark": "wmark.text.schemes",
    "KGW": "wmark.text.schemes",
    "Unigram": "wmark.text.schemes",
    "Gumbel": "wmark.text.schemes",
    "Tournament": "wmark.text.schemes",
    "SCHEMES": "wmark.text.schemes",
    "make_scheme": "wmark.text.schemes",
    "DetectionResult": "wmark.text.detect",
    "BatchDetection": "wmark.text.detect",
    "WindowResult": "wmark.text.detect",
    "TokenScores": "wmark.text.detect",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'wmark.text' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
