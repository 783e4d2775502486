"""wmark.stats: tails against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest

from wmark import stats


def test_binom_log10_sf_matches_exact_tail():
    assert stats.binom_log10_sf(10, 10, 0.25) == pytest.approx(10 * math.log10(0.25))
    assert stats.binom_log10_sf(0, 10, 0.25) == 0.0 and stats.binom_log10_sf(3, 0, 0.25) == 0.0
    k = np.arange(1, 41)
    assert np.allclose(10 ** stats.binom_log10_sf(k, 40, 0.3), stats.binom_sf(k, 40, 0.3), rtol=1e-9)
    assert stats.binom_log10_sf(900, 1000, 0.25) < -300  # beyond float64's smallest sf


def test_binom_sf_equals_scipy_everywhere():
    from scipy.stats import binom

    rng = np.random.default_rng(0)
    n = rng.integers(-2, 3000, 20_000)
    k = rng.uniform(-5, 3005, 20_000)  # below, inside and beyond the support; non-integer k
    for p in (0.0, 0.01, 0.25, 0.5, 1.0):
        want = np.where(n <= 0, 1.0, binom.sf(np.ceil(k) - 1, n, p))
        assert np.array_equal(stats.binom_sf(k, n, p), want)
    assert stats.binom_sf(3, 10, 0.5) == pytest.approx(1 - (1 + 10 + 45) / 1024)
