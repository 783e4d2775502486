"""wmark: autophagy-aware watermarking.

Mark at generation time, detect with a calibrated p-value, strip before retraining, and measure
how much a self-consuming training loop amplifies marks and artifacts.

``import wmark`` is instant: heavy modules (torch, tokenizers, ...) load when a name is first used.
"""
from __future__ import annotations

import importlib
from typing import Any

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
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'wmark' has no attribute {name!r}")
    module = importlib.import_module(mod)
    value = module if mod == f"wmark.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
