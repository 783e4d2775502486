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
