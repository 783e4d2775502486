"""wmark: autophagy-aware watermarking.

Mark at generation time, detect with a calibrated p-value, strip before retraining, and measure
how much a self-consuming training loop amplifies marks and artifacts.

``import wmark`` is instant: heavy modules (torch, tokenizers, ...) load when a name is first used.
"""
from __future__ import annotations

from wmark._lazy import lazy_attributes

__version__ = "0.1.0"

# public name -> module that defines it (resolved lazily, PEP 562)
_LAZY = {
    "Key": "wmark.keys",
    "DEMO_PASSPHRASE": "wmark.keys",
    "InvalidKeyError": "wmark.keys",
    "text": "wmark.text",
    "lm": "wmark.lm",
    "image": "wmark.image",
    "attacks": "wmark.attacks",
    "loop": "wmark.loop",
    "scrub": "wmark.scrub",
    "hf": "wmark.hf",
}

__getattr__, __dir__, __all__ = lazy_attributes(__name__, _LAZY, ("__version__",))
