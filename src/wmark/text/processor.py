"""Hugging Face compatibility: a scheme as a ``transformers.LogitsProcessor`` that marks the
distribution the user asked for.

transformers runs the ``logits_processor=`` entries of ``generate()`` *before* its temperature /
top-k / top-p warpers, so a mark placed there sees the raw logits: Gumbel ignores the sampling
settings, KGW's ``delta`` acts as ``delta / T``. :mod:`wmark.hf` puts the mark after the warpers;
the processor built here carries the checks (it warns, once, where it finds warpers after itself)
and two generation-time rules for deterministic schemes:

- **repeated context** (``mask_repeated``): where the context window the seed reads has already
  occurred in the sequence, the step is sampled plainly (scores returned unmarked), so a
  deterministic scheme cannot lock into a repetition loop (its next token would repeat too);
- **distinct rows** (``distinct_rows``): a row identical to an earlier row of the batch
  (``num_return_sequences > 1``, beams, a repeated prompt) is sampled plainly until it differs, so
  copies of a prompt give distinct sequences; once two rows differ they differ for good.

Both only ever replace a marked step by a plain one: the output distribution of a distortion-free
scheme is unchanged, and the detector's dedup already ignores repeated (context, token) pairs.

transformers is optional (extra ``hf``); without it :func:`make_logits_processor` returns the
plain-callable core, which works with :func:`wmark.lm.generate`.
"""
from __future__ import annotations

import sys
import warnings
from typing import Any, Callable

import torch

#: schemes whose output token is a deterministic function of (key, context, scores)
DETERMINISTIC = frozenset({"gumbel"})
#: schemes whose output, averaged over keys, is the input distribution (tournament: when the input
#: has at most its ``top_k`` candidates; it keeps only those)
DISTORTION_FREE = frozenset({"gumbel", "tournament"})
#: transformers' sampling warpers (``generate()`` adds them after the user's processors)
WARPERS = frozenset({"TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper",
                     "TypicalLogitsWarper", "EpsilonLogitsWarper", "EtaLogitsWarper", "TopHLogitsWarper"})


def is_deterministic(scheme: Any) -> bool:
    """The scheme picks the next token itself, deterministically given key, context and scores
    (Gumbel): sampling settings cannot add randomness after it, identical rows stay identical.
    A scheme may say so with a boolean ``deterministic`` attribute."""
    flag = getattr(scheme, "deterministic", None)
    return bool(flag) if isinstance(flag, bool) else getattr(scheme, "name", None) in DETERMINISTIC


def is_distortion_free(scheme: Any) -> bool:
    """Over keys, the scheme's next-token distribution is its input distribution (Gumbel, tournament);
    KGW and Unigram tilt it towards the green list. A scheme may say so with ``distortion_free``."""
    flag = getattr(scheme, "distortion_free", None)
    return bool(flag) if isinstance(flag, bool) else getattr(scheme, "name", None) in DISTORTION_FREE


def repeated_context(input_ids: torch.Tensor, history: int) -> torch.Tensor:
    """``[B]`` bool: the last ``history`` tokens of each row occurred earlier in that row as a
    window followed by a token (the seed about to be used has been used before)."""
    B, T = input_ids.shape
    if history < 1 or T <= history:
        return torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    last = input_ids[:, T - history:]
    earlier = input_ids[:, : T - 1].unfold(1, history, 1)  # windows starting at 0 .. T - 1 - history
    return (earlier == last[:, None, :]).all(-1).any(-1)


def duplicate_rows(input_ids: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: the row equals an earlier row of the batch (the first copy is False)."""
    B = input_ids.shape[0]
    if B < 2:
        return torch.zeros(B, dtype=torch.bool, device=input_ids.device)
    _, inverse = torch.unique(input_ids, dim=0, return_inverse=True)
    first = torch.full((B,), B, dtype=torch.long, device=input_ids.device)
    first.scatter_reduce_(0, inverse, torch.arange(B, device=input_ids.device), reduce="amin")
    return first[inverse] != torch.arange(B, device=input_ids.device)


def _consequence(scheme: Any) -> str:
    name = getattr(scheme, "name", "")
    if name == "gumbel":
        return "are ignored (the mark picks the token from the raw logits)"
    if name in ("kgw", "unigram"):
        return "distort the mark (delta acts as delta/T; top-k/top-p cut the biased logits)"
    return "act on the marked scores instead of the model's (the mark is not on the asked-for distribution)"


def caller_warning(frame: Any, processor: Any, scheme: Any, has_warpers: bool = False) -> str | None:
    """The one-line warning for ``processor`` (the scheme itself, or a processor wrapping it) called
    from ``frame``, where that is transformers' ``LogitsProcessorList`` and sampling warpers follow
    it (the ``logits_processor=`` pitfall); None where the order is right or cannot be read."""
    try:
        procs = frame.f_locals.get("self")
    except Exception:  # a frame we cannot read: nothing to check
        return None
    if not isinstance(procs, list) or type(procs).__name__ != "LogitsProcessorList":
        return None
    at = next((i for i, p in enumerate(procs) if p is processor), None)
    if at is None:
        return None
    later = [type(p).__name__ for p in procs[at + 1:] if type(p).__name__ in WARPERS]
    if not later:
        return None
    if has_warpers:
        return (f"wmark: transformers runs {', '.join(later)} after the wmark processor, which already applied "
                "its warpers: sampling is warped twice and the mark distorted; give generate() "
                "**wmark.hf.neutral_sampling() or use wmark.hf.generate(model, scheme, ...)")
    return (f"wmark: in generate() transformers runs {', '.join(later)} after the logits_processor= entries, so "
            f"temperature/top-k/top-p {_consequence(scheme)}; use wmark.hf.generate(model, scheme, ...) or "
            "watermarking_config=wmark.hf.watermarking_config(scheme)")


class WatermarkCore:
    """The processor's logic, transformers-free: ``(input_ids [B, T], scores [B, V]) -> [B, V]``.

    ``warpers``: a callable ``(input_ids, scores) -> scores`` (e.g. transformers'
    ``LogitsProcessorList`` of temperature / top-k / top-p warpers) applied before the mark, for
    users who put the processor in ``logits_processor=`` themselves (then give ``generate()``
    neutral sampling settings, see :func:`wmark.hf.neutral_sampling`). ``mask_repeated`` /
    ``distinct_rows`` (default: on for deterministic schemes): see the module docstring.
    """

    def __init__(self, scheme: Any, warpers: Callable | None = None, *, mask_repeated: bool | None = None,
                 distinct_rows: bool | None = None) -> None:
        if not callable(scheme):
            raise TypeError(f"scheme must be a wmark text scheme, got {type(scheme).__name__}")
        if warpers is not None and not callable(warpers):
            raise TypeError(f"warpers must be callable (input_ids, scores) -> scores, got {type(warpers).__name__}")
        det = is_deterministic(scheme)
        self.scheme = scheme
        self.warpers = warpers
        self.mask_repeated = det if mask_repeated is None else bool(mask_repeated)
        self.distinct_rows = det if distinct_rows is None else bool(distinct_rows)
        self._history = int(getattr(getattr(scheme, "seeding", None), "history", 0))
        self._shape: tuple[int, int] | None = None  # (B, T) of the last call: a new generation resets
        self._rows_may_repeat = True
        self._warned: set[str] = set()

    @property
    def deterministic(self) -> bool:
        return is_deterministic(self.scheme)

    @property
    def distortion_free(self) -> bool:
        return is_distortion_free(self.scheme)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape[0], input_ids.shape[-1]
        fresh = self._shape is None or self._shape[0] != B or T != self._shape[1] + 1
        self._shape = (B, T)
        if fresh:  # first step of a generation: check where we run, once
            self._rows_may_repeat = True
            self._check_caller(sys._getframe(1))
        if self.warpers is not None:
            scores = self.warpers(input_ids, scores)
        if fresh:
            self._check_input(input_ids, scores)
        out = self.scheme(input_ids, scores)
        plain = None
        if self.mask_repeated:
            plain = repeated_context(input_ids, self._history)
        if self.distinct_rows and self._rows_may_repeat:
            dup = duplicate_rows(input_ids)
            self._rows_may_repeat = bool(dup.any())  # rows that differ never become equal again
            plain = dup if plain is None else plain | dup
        if plain is not None and bool(plain.any()):
            out = torch.where(plain[:, None].to(out.device), scores.to(out.dtype), out)
        return out

    # ---- one-time checks ------------------------------------------------------------------
    def _warn(self, tag: str, message: str) -> None:
        if tag not in self._warned:
            self._warned.add(tag)
            warnings.warn(message, UserWarning, stacklevel=4)

    def _check_caller(self, frame: Any) -> None:
        message = caller_warning(frame, self, self.scheme, has_warpers=self.warpers is not None)
        if message is not None:
            self._warn("order", message)

    def _check_input(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        if self.deterministic and not self.distinct_rows and input_ids.shape[0] > 1:
            if bool(duplicate_rows(input_ids).any()):
                self._warn("rows", f"wmark: {getattr(self.scheme, 'name', 'the scheme')} is deterministic given key "
                           "and context: identical rows (num_return_sequences > 1, beams) will give identical "
                           "sequences; keep distinct_rows=True or use a sampling scheme (kgw, tournament)")
        top_k = getattr(self.scheme, "top_k", None)
        if getattr(self.scheme, "name", None) == "tournament" and top_k is not None and scores.dim() == 2:
            support = int(torch.isfinite(scores).sum(-1).max())
            if top_k < support < scores.shape[-1]:  # cut by the sampling settings, but not to its top_k
                self._warn("support", f"wmark: the tournament keeps only its top_k={top_k} candidates of the "
                           f"{support} the sampling settings allow: not distortion-free here; sample with "
                           f"top_k <= {top_k} or build Tournament(top_k=None)")

    def __repr__(self) -> str:
        extra = "" if self.warpers is None else f", warpers={self.warpers!r}"
        return f"WatermarkProcessor({self.scheme!r}{extra})"


_PROCESSOR_CLASS: type | None = None


def _processor_class() -> type | None:
    """``WatermarkProcessor``: :class:`WatermarkCore` as a ``transformers.LogitsProcessor`` subclass
    (None without transformers). Built once, so ``isinstance`` checks work across calls."""
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is None:
        try:
            from transformers import LogitsProcessor
        except ImportError:
            return None

        class WatermarkProcessor(WatermarkCore, LogitsProcessor):
            """A wmark scheme as a transformers logits processor (see :mod:`wmark.text.processor`).
            ``WatermarkCore.__call__`` comes first in the MRO: it is called straight from
            ``LogitsProcessorList``, whose frame it reads for the order check."""

        _PROCESSOR_CLASS = WatermarkProcessor
    return _PROCESSOR_CLASS


def make_logits_processor(scheme: Any, warpers: Callable | None = None, *, mask_repeated: bool | None = None,
                          distinct_rows: bool | None = None) -> WatermarkCore:
    """A ``LogitsProcessor`` marking with ``scheme`` (a plain :class:`WatermarkCore` callable where
    transformers is not installed). ``warpers`` run first; see :class:`WatermarkCore`."""
    cls = _processor_class() or WatermarkCore
    return cls(scheme, warpers, mask_repeated=mask_repeated, distinct_rows=distinct_rows)
