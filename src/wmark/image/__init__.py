"""Neural image watermark: embed, detect and strip at any resolution (lazy: torch loads on first use).

    from wmark.image import load
    wm = load()                      # shipped weights, sha256-verified
    marked = wm.embed(img, key, payload="0102030405ff").images
    det = wm.detect(marked, key)     # Detection(detected, p_value, payload, ...)
    clean = wm.strip(marked, key).images
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

_LAZY = {
    "ImageWatermarker": "wmark.image.model", "Detection": "wmark.image.model", "Embedded": "wmark.image.model",
    "Stripped": "wmark.image.model", "Config": "wmark.image.model", "load": "wmark.image.model",
    "embed": "wmark.image.model", "detect": "wmark.image.model", "strip": "wmark.image.model",
    "Image16": "wmark.image.io", "png_bytes": "wmark.image.io", "ImageError": "wmark.image.io",
}
__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY)
