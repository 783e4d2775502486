"""Hugging Face compatibility: wrap a scheme as a ``transformers.LogitsProcessor``.

transformers is optional (extra ``hf``); without it the scheme itself is already a callable
``(input_ids [B, T], scores [B, V]) -> [B, V]``.
"""
from __future__ import annotations

from typing import Any, Callable

import torch


def make_logits_processor(scheme: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A ``LogitsProcessor`` subclass instance delegating to ``scheme`` (or the scheme itself)."""
    try:
        from transformers import LogitsProcessor
    except ImportError:
        return scheme

    class WatermarkProcessor(LogitsProcessor):
        """wmark scheme as a transformers logits processor."""

        def __init__(self, inner: Any) -> None:
            self.scheme = inner

        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
            return self.scheme(input_ids, scores)

        def __repr__(self) -> str:
            return f"WatermarkProcessor({self.scheme!r})"

    return WatermarkProcessor(scheme)
