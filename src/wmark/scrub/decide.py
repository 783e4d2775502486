"""Deciding "marked" over a whole dataset: a per-sample level ``alpha``, or Benjamini–Hochberg FDR.

At dataset scale a per-sample level drops about ``alpha * N`` clean samples (``N`` tested). The
Benjamini–Hochberg step-up rule at level ``q`` instead bounds the expected *fraction* of false
drops among the drops by ``q`` (independent or positively dependent p-values): sort the ``m``
p-values, find the largest ``k`` with ``p_(k) <= k q / m`` and call the ``k`` smallest marked.

BH needs every p-value before it can decide one, so a scrub with ``fdr`` runs in two passes: pass 1
detects every sample and journals its p-value; :func:`bh_cutoff` turns them into one cutoff
``t = p_(k)``; pass 2 calls a sample marked when ``p <= t`` and acts on it. With ``alpha`` the rule
is known up front and a scrub runs in one pass (marked: ``p < alpha``, as the detectors decide).

Pure numpy, no torch.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: the cutoff that calls nothing marked (p-values are >= 0, so no p-value is <= it)
NOTHING = -1.0


def _clean(p_values: Iterable[float | None]) -> np.ndarray:
    """The tested p-values as float64 (None / NaN: not tested, left out); ValueError outside [0, 1]."""
    p = np.asarray([x for x in p_values if x is not None], dtype=np.float64).reshape(-1)
    p = p[~np.isnan(p)]
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise ValueError(f"p-values must be in [0, 1], got range [{p.min():.3g}, {p.max():.3g}]")
    return p


def check_level(value: float, name: str) -> float:
    """``value`` as a float strictly inside (0, 1) (ValueError naming ``name`` otherwise)."""
    v = float(value)
    if not 0.0 < v < 1.0 or math.isnan(v):
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return v


def bh_cutoff(p_values: Iterable[float | None], q: float) -> float:
    """The Benjamini–Hochberg cutoff at FDR level ``q``: the largest ``p_(k)`` with
    ``p_(k) <= k q / m`` over the ``m`` tested p-values (None / NaN are untested and do not count
    in ``m``); :data:`NOTHING` (-1.0) where no ``k`` qualifies. Marked: ``p <= cutoff``."""
    q = check_level(q, "the FDR level q")
    p = np.sort(_clean(p_values))
    m = p.size
    if m == 0:
        return NOTHING
    ok = np.nonzero(p <= q * np.arange(1, m + 1) / m)[0]
    return float(p[ok[-1]]) if ok.size else NOTHING


def bh_reject(p_values: Sequence[float], q: float) -> np.ndarray:
    """``[m]`` bool: which of ``p_values`` BH at level ``q`` calls marked (all must be tested)."""
    p = np.asarray(p_values, dtype=np.float64)
    return p <= bh_cutoff(p, q)


def is_marked(p_value: float | None, *, alpha: float | None = None, cutoff: float | None = None) -> bool | None:
    """The decision for one p-value: ``p < alpha`` (per-sample level) or ``p <= cutoff`` (a BH cutoff
    from :func:`bh_cutoff`); None where the sample was not tested. Exactly one of the two is given."""
    if (alpha is None) == (cutoff is None):
        raise ValueError("give exactly one of alpha and cutoff")
    if p_value is None or (isinstance(p_value, float) and math.isnan(p_value)):
        return None
    return bool(p_value < alpha) if alpha is not None else bool(p_value <= cutoff)


def expected_false(p_values: Iterable[float | None], *, alpha: float | None = None,
                   fdr: float | None = None) -> dict:
    """What a rule calls marked on these p-values and how many of those calls it expects to be false.

    ``alpha``: ``alpha * m`` false calls expected at most (every one of the ``m`` tested samples
    clean; fewer in proportion to the clean ones). ``fdr`` = q: at most ``q * R`` of the ``R``
    calls expected false (the BH guarantee; ``q * R * m0 / m`` with ``m0`` clean samples).
    Returns ``{"rule", "level", "tested", "marked", "cutoff", "expected_false"}``."""
    p = _clean(p_values)
    if (alpha is None) == (fdr is None):
        raise ValueError("give exactly one of alpha and fdr")
    if alpha is not None:
        a = check_level(alpha, "alpha")
        marked = int(np.count_nonzero(p < a))
        return {"rule": "alpha", "level": a, "tested": int(p.size), "marked": marked, "cutoff": a,
                "expected_false": a * p.size}
    q = check_level(fdr, "the FDR level q")
    cut = bh_cutoff(p, q)
    marked = int(np.count_nonzero(p <= cut))
    return {"rule": "fdr", "level": q, "tested": int(p.size), "marked": marked, "cutoff": cut,
            "expected_false": q * marked}
