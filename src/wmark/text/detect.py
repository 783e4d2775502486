"""Detection statistics shared by every text scheme: dedup, global test, windowed (WinMax-style) search.

A scheme turns token ids into per-token scores (:class:`TokenScores`); :func:`detect_scores` sums
them over the scored positions and reads the p-value off the scheme's null distribution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wmark.stats import bonferroni


@dataclass(frozen=True)
class TokenScores:
    """Per-position scores of a padded batch.

    ``scores [B, L]`` float64 score of the token at ``positions[b, i]`` (NaN where not valid);
    ``positions [B, L]`` its index in the input sequence; ``valid [B, L]`` bool, inside the real
    length; ``keys [B, L]`` int64 identity of (seed, token) — two positions with equal keys get
    the same pseudorandom draw, so only the first is an independent trial (dedup);
    ``lengths [B]``; ``history`` context tokens before the first scored position.
    """

    scores: torch.Tensor
    positions: torch.Tensor
    valid: torch.Tensor
    keys: torch.Tensor
    lengths: torch.Tensor
    history: int


@dataclass(frozen=True)
class WindowResult:
    """Best window found by the windowed search (token indices ``[start, end)`` of the input)."""

    start: int
    end: int
    num_scored: int
    score: float
    z_score: float
    p_value: float  #: uncorrected p-value of this window
    p_value_corrected: float  #: Bonferroni-corrected for ``num_windows`` windows searched
    num_windows: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (plain ints and floats)."""
        return {"start": int(self.start), "end": int(self.end), "p_value": float(self.p_value),
                "p_value_corrected": float(self.p_value_corrected), "z_score": float(self.z_score),
                "num_scored": int(self.num_scored), "score": float(self.score), "num_windows": int(self.num_windows)}


@dataclass(frozen=True)
class DetectionResult:
    """Detection of one sequence.

    ``score``: green count (KGW, Unigram), sum of -log(1-r) (Gumbel) or sum of g-values
    (tournament) over the ``num_scored`` scored tokens; ``z_score`` its standardised value;
    ``p_value`` the exact tail under "not marked with this key"; ``detected``: the p-value (the
    window's corrected one when ``window`` is set) is below ``alpha``.
    """

    scheme: str
    num_tokens: int
    num_scored: int
    score: float
    z_score: float
    p_value: float
    alpha: float
    detected: bool
    window: WindowResult | None = None

    @property
    def mean_score(self) -> float:
        """Score per scored token (the green fraction for KGW / Unigram)."""
        return self.score / self.num_scored if self.num_scored else float("nan")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of every field (plain bools, ints, floats); ``window`` only when set."""
        out: dict[str, Any] = {"detected": bool(self.detected), "p_value": float(self.p_value),
                               "z_score": float(self.z_score), "num_scored": int(self.num_scored),
                               "num_tokens": int(self.num_tokens), "score": float(self.score),
                               "scheme": self.scheme, "alpha": float(self.alpha)}
        if self.window is not None:
            out["window"] = self.window.to_json()
        return out


@dataclass(frozen=True)
class BatchDetection:
    """Detection of a padded batch: numpy arrays ``[B]`` per field; ``batch[i]`` is a
    :class:`DetectionResult`."""

    scheme: str
    num_tokens: np.ndarray
    num_scored: np.ndarray
    score: np.ndarray
    z_score: np.ndarray
    p_value: np.ndarray
    alpha: float
    detected: np.ndarray
    windows: tuple[WindowResult | None, ...]

    def __len__(self) -> int:
        return len(self.p_value)

    def __getitem__(self, i: int) -> DetectionResult:
        return DetectionResult(self.scheme, int(self.num_tokens[i]), int(self.num_scored[i]),
                               float(self.score[i]), float(self.z_score[i]), float(self.p_value[i]),
                               self.alpha, bool(self.detected[i]), self.windows[i])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to_json(self) -> list[dict[str, Any]]:
        """One :meth:`DetectionResult.to_json` dict per row."""
        return [r.to_json() for r in self]


def as_batch(ids: Any, lengths: Any, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate token ids ``[T]`` or ``[B, T]`` (list, numpy, tensor) -> (LongTensor [B, T], lengths [B])."""
    if torch.is_tensor(ids):
        t = ids
    else:
        try:
            t = torch.as_tensor(np.asarray(ids))
        except (ValueError, TypeError):
            raise ValueError("token ids must be a rectangular array of integers") from None
    if t.numel() == 0:
        raise ValueError("no tokens to score (empty text)")
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"token ids must be integers, got {t.dtype}")
    if t.dim() == 1:
        t = t[None]
    if t.dim() != 2:
        raise ValueError(f"token ids must be [T] or [B, T], got shape {tuple(t.shape)}")
    t = t.to(torch.int64)
    B, T = t.shape
    if lengths is None:
        lens = torch.full((B,), T, dtype=torch.int64, device=t.device)
    else:
        lens = torch.as_tensor(lengths, dtype=torch.int64, device=t.device).reshape(-1)
        if lens.shape[0] != B or bool((lens < 0).any()) or bool((lens > T).any()):
            raise ValueError(f"lengths must be {B} values in [0, {T}]")
    if B == 0 or int(lens.max()) == 0:
        raise ValueError("no tokens to score (empty text)")
    if bool((lens == T).all()):
        lo, hi = int(t.min()), int(t.max())
    else:
        inside = torch.arange(T, device=t.device)[None, :] < lens[:, None]
        lo, hi = int(torch.where(inside, t, 0).min()), int(torch.where(inside, t, 0).max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(f"token id {lo if lo < 0 else hi} out of range for vocab_size {vocab_size}")
    return t, lens


def seed_keys(c: torch.Tensor, a: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """int64 identity ``[...]`` of (context seed, anchor, token): ``uint32(seed) * 2**31 + token``.
    Dedup on it is exact: equal keys mean identical draws (whatever n-grams produced them)."""
    from wmark.text import hashing

    seed = c if a is None else c ^ hashing.mix32(a)
    return hashing.to_u32(seed) * (1 << 31) + tokens.to(torch.int64)


def first_occurrence(keys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: valid positions whose key has not occurred earlier (among valid) in its row.
    One batched stable sort per row; invalid positions sort last and are never first."""
    big = torch.iinfo(torch.int64).max
    k = keys.masked_fill(~valid, big)
    sk, idx = torch.sort(k, dim=1, stable=True)  # equal keys keep position order
    first_sorted = torch.ones_like(valid)
    first_sorted[:, 1:] = sk[:, 1:] != sk[:, :-1]
    out = torch.empty_like(valid).scatter_(1, idx, first_sorted)
    return out & valid


def window_lengths(n: int, min_window: int) -> list[int]:
    """Window sizes searched for ``n`` scored tokens: geometric (ratio sqrt 2) from ``min_window``,
    always including ``n`` itself (the global test)."""
    sizes, size = [], float(max(1, min_window))
    while size < n:
        sizes.append(int(round(size)))
        size *= 2 ** 0.5
    sizes.append(n)
    return sorted(set(sizes))


def window_search(s: np.ndarray, pos: np.ndarray, null, min_window: int) -> WindowResult:
    """Best window over the kept per-token scores ``s [n]`` (at input positions ``pos [n]``).
    Windows of each size in :func:`window_lengths` start every ``max(1, size // 4)`` tokens."""
    n = len(s)
    cs = np.concatenate([[0.0], np.cumsum(s)])
    best, total = None, 0
    for size in window_lengths(n, min_window):
        starts = np.arange(0, n - size + 1, max(1, size // 4))
        if starts[-1] != n - size:
            starts = np.append(starts, n - size)
        sums = cs[starts + size] - cs[starts]
        p = null.p_value(sums, size)
        i = int(np.argmin(p))
        total += len(starts)
        if best is None or p[i] < best[0]:
            best = (float(p[i]), int(starts[i]), size, float(sums[i]))
    p, start, size, score = best
    return WindowResult(start=int(pos[start]), end=int(pos[start + size - 1]) + 1, num_scored=size,
                        score=score, z_score=float(null.z(score, size)), p_value=p,
                        p_value_corrected=float(bonferroni(p, total)), num_windows=total)


def detect_scores(ts: TokenScores, null, *, scheme: str, alpha: float = 1e-3, dedup: bool = True,
                  ignore_prefix: int = 0, windowed: bool = False, min_window: int = 50) -> BatchDetection:
    """Global (and optionally windowed) test on per-token scores."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if ignore_prefix < 0:
        raise ValueError(f"ignore_prefix must be >= 0, got {ignore_prefix}")
    keep = ts.valid & (ts.positions >= ignore_prefix)
    if dedup and keep.any():
        keep = keep & first_occurrence(ts.keys, keep)
    vals = torch.where(keep, ts.scores, torch.zeros_like(ts.scores))
    n = keep.sum(1).cpu().numpy()
    s = vals.sum(1).cpu().numpy()
    p = np.asarray(null.p_value(s, n), dtype=np.float64).reshape(-1)
    z = np.asarray(null.z(s, n), dtype=np.float64).reshape(-1)
    windows: list[WindowResult | None] = [None] * len(n)
    decide = p.copy()
    if windowed:
        for b in range(len(n)):
            if n[b] == 0:
                continue
            m = keep[b]
            windows[b] = window_search(ts.scores[b][m].cpu().numpy(), ts.positions[b][m].cpu().numpy(), null,
                                       min_window)
            decide[b] = windows[b].p_value_corrected
    return BatchDetection(scheme=scheme, num_tokens=ts.lengths.cpu().numpy(), num_scored=n, score=s,
                          z_score=z, p_value=p, alpha=alpha, detected=decide < alpha, windows=tuple(windows))
