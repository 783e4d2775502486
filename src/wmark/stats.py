"""Null-distribution tails shared by text and image detectors.

All functions take numpy-compatible arrays (or scalars) and broadcast; they return float64 numpy
arrays. Tails are computed directly (``sf``), never as ``1 - cdf``, so p-values stay accurate far
into the tail (down to ~1e-300).
"""
from __future__ import annotations

import numpy as np


def _binom_upper():
    """``(j, n, p) -> P[X > j]`` for ``0 <= j < n``: the ufunc ``scipy.stats.binom.sf`` evaluates inside
    its support (Boost's), without that method's per-call argument handling (~0.1 ms)."""
    try:
        from scipy.special._ufuncs import _binom_sf
    except ImportError:  # a SciPy without it: the public method, same values
        from scipy.stats import binom

        return binom.sf
    return _binom_sf


def binom_sf(k, n, p):
    """P[X >= k] for X ~ Binomial(n, p) (exact). ``k`` may be non-integer (ceiling is used)."""
    j = np.ceil(np.asarray(k, dtype=np.float64)) - 1
    n = np.asarray(n)
    with np.errstate(invalid="ignore"):
        inside = _binom_upper()(np.clip(j, 0, None), n, p)
    out = np.where(j < 0, 1.0, np.where(j >= n, 0.0, inside))
    return np.where(n <= 0, 1.0, out)


def binom_log10_sf(k, n, p):
    """log10 P[X >= k] for X ~ Binomial(n, p), accurate where the tail underflows float64; 0 where
    n <= 0 or k <= 0."""
    from scipy.stats import binom

    k = np.ceil(np.asarray(k, dtype=np.float64))
    n = np.asarray(n)
    with np.errstate(divide="ignore"):
        out = binom.logsf(k - 1, n, p) / np.log(10.0)
    return np.where((n <= 0) | (k <= 0), 0.0, out)


def binom_z(k, n, p):
    """Standardised count (k - n p) / sqrt(n p (1-p)); 0 where n = 0."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (k - n * p) / np.sqrt(n * p * (1 - p))
    return np.where(n > 0, z, 0.0)


def gamma_sf(x, shape):
    """P[X >= x] for X ~ Gamma(shape, 1) (sum of ``shape`` iid Exp(1)); 1 where shape = 0."""
    from scipy.special import gammaincc

    x = np.asarray(x, dtype=np.float64)
    shape = np.asarray(shape, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        out = gammaincc(np.maximum(shape, 1e-300), np.maximum(x, 0.0))
    return np.where(shape > 0, out, 1.0)


def normal_sf(z):
    """P[Z >= z] for a standard normal Z."""
    from scipy.special import ndtr

    return ndtr(-np.asarray(z, dtype=np.float64))


def bonferroni(p, m):
    """Family-wise corrected p-value min(1, p * m) for the best of ``m`` tests."""
    return np.minimum(1.0, np.asarray(p, dtype=np.float64) * np.maximum(np.asarray(m, dtype=np.float64), 1.0))


def clopper_pearson(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson) ``conf`` interval ``(lower, upper)`` for a binomial rate
    from ``k`` successes in ``n`` trials; ``(0, 1)`` when ``n == 0``."""
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    a = (1.0 - conf) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi
