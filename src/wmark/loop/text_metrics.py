"""Pure text metrics of the loop (token-id tensors in, floats out) and the radioactivity test.

Diversity: :func:`distinct_n` (corpus-level distinct-n, Li et al. 2016), :func:`support_size`,
:func:`tail_token_mass`. Inherited mark: :func:`radioactivity` (Sander et al. 2024): pool the
(seed, token) pairs of many texts, score each distinct pair once, exact binomial tail.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wmark import stats

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from wmark.text.detect import TokenScores


def distinct_n(ids: "torch.Tensor", n: int) -> float:
    """Distinct n-grams / all n-grams over the rows of ``ids [B, L]`` (n-grams never cross rows)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if ids.ndim != 2 or ids.shape[1] < n:
        raise ValueError(f"need ids [B, L] with L >= {n}, got shape {tuple(ids.shape)}")
    grams = ids.unfold(1, n, 1).reshape(-1, n)  # [B * (L - n + 1), n]
    return float(len(np.unique(grams.cpu().numpy(), axis=0)) / grams.shape[0])


def support_size(ids: "torch.Tensor") -> int:
    """Number of distinct token ids in ``ids [...]``."""
    return int(len(np.unique(ids.cpu().numpy())))


def head_tokens(freq: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``[V]``: the ``k`` most frequent tokens of ``freq [V]`` (ties: lower id first)."""
    head = np.zeros(len(freq), dtype=bool)
    head[np.argsort(-np.asarray(freq), kind="stable")[:k]] = True
    return head


def tail_token_mass(ids: "torch.Tensor", head: np.ndarray) -> float:
    """Share of the tokens of ``ids [...]`` outside the boolean ``head [V]``."""
    x = ids.cpu().numpy().reshape(-1)
    return float((~head[x]).mean()) if len(x) else float("nan")


@dataclass(frozen=True)
class Radioactivity:
    """Pooled, de-duplicated green test: ``num_scored`` distinct (seed, token) pairs, ``num_green``
    of them green; ``z_score``, ``log10_p`` (exact binomial upper tail, log10) and ``p_value``."""

    num_scored: int
    num_green: int
    gamma: float
    z_score: float
    log10_p: float

    @property
    def p_value(self) -> float:
        return float(10.0 ** self.log10_p)

    @property
    def green_fraction(self) -> float:
        return self.num_green / self.num_scored if self.num_scored else float("nan")


def radioactivity(ts: "TokenScores", gamma: float) -> Radioactivity:
    """Radioactivity test on per-token green scores ``ts`` of a batch (0/1 scores, e.g. KGW):
    every valid position of every row joins one pool, repeated (seed, token) keys count once."""
    import torch

    keys = ts.keys[ts.valid]
    scores = ts.scores[ts.valid]
    if keys.numel() == 0:
        return Radioactivity(0, 0, gamma, 0.0, 0.0)
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), keys.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, torch.arange(keys.numel()), reduce="amin")
    g = scores[first]
    n, k = int(g.numel()), int(g.sum())
    z = (k - n * gamma) / math.sqrt(n * gamma * (1 - gamma))
    return Radioactivity(n, k, float(gamma), float(z), float(stats.binom_log10_sf(k, n, gamma)))
