"""Statistical text watermarks: KGW (lefthash / selfhash / minhash), Unigram, Gumbel, tournament.

Lazy: ``from wmark.text import KGW`` imports torch only then.
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

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
__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY)
