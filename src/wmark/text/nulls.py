"""Null distributions of the detection score ``S`` summed over ``n`` scored tokens.

Each null gives an exact (or stated) upper tail ``p_value(S, n)`` and a standardised ``z(S, n)``,
vectorised over numpy arrays. They are what make p-values calibrated on unmarked text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wmark import stats


@dataclass(frozen=True)
class BinomialNull:
    """Each scored token contributes ``trials`` Bernoulli(``p``) successes: ``S ~ Bin(n*trials, p)``.
    Exact tail (KGW / Unigram green counts: trials=1, p=gamma; tournament g-values: trials=m, p=1/2)."""

    p: float
    trials: int = 1

    def p_value(self, s, n):
        return stats.binom_sf(s, np.asarray(n) * self.trials, self.p)

    def z(self, s, n):
        return stats.binom_z(s, np.asarray(n) * self.trials, self.p)


@dataclass(frozen=True)
class GammaNull:
    """Each token contributes ``-log(1 - r)`` with ``r ~ U(0, 1)``, i.e. Exp(1): ``S ~ Gamma(n, 1)``
    (Gumbel / EXP scheme). Exact tail."""

    def p_value(self, s, n):
        return stats.gamma_sf(s, n)

    def z(self, s, n):
        n = np.asarray(n, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, (np.asarray(s, dtype=np.float64) - n) / np.sqrt(n), 0.0)


@dataclass(frozen=True)
class NormalNull:
    """A sum of ``n`` iid bounded per-token scores with known ``mean`` and ``var``; normal tail
    (used for the tournament's weighted mean, where n * layers terms make the CLT tight)."""

    mean: float
    var: float

    def z(self, s, n):
        n = np.asarray(n, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, (np.asarray(s, dtype=np.float64) - n * self.mean) / np.sqrt(n * self.var), 0.0)

    def p_value(self, s, n):
        return np.where(np.asarray(n) > 0, stats.normal_sf(self.z(s, n)), 1.0)
