"""Decisions over many tests: Benjamini–Hochberg against closed forms, the expected false calls."""
from __future__ import annotations

import math

import numpy as np
import pytest

from wmark.scrub.decide import NOTHING, bh_cutoff, bh_reject, expected_false, is_marked


@pytest.mark.parametrize("k,q", [(100, 0.1), (50, 0.2), (7, 0.05), (1000, 0.01)])
def test_bh_on_signals_plus_an_even_null_grid_matches_the_closed_form(k, q):
    # k strong signals, then null p-values j/m (j = 1..m-k): p_(k+j) = j/m <= (k+j) q/m  <=>  j <= k q/(1-q)
    m = 5000
    p = np.concatenate([np.full(k, 1e-9), np.arange(1, m - k + 1) / m])
    np.random.default_rng(0).shuffle(p)
    expect = k + math.floor(k * q / (1 - q))
    assert int(bh_reject(p, q).sum()) == expect
    assert bh_cutoff(p, q) == (1e-9 if expect == k else pytest.approx((expect - k) / m))


def test_bh_on_the_1995_paper_example_rejects_four():
    # Benjamini & Hochberg (1995), section 4: 15 p-values at q = 0.05 -> the 4 smallest are rejected
    p = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719,
         0.6528, 0.7590, 1.0]
    assert bh_reject(p, 0.05).tolist() == [True] * 4 + [False] * 11
    assert bh_cutoff(p, 0.05) == 0.0095


def test_bh_matches_a_brute_force_step_up_on_random_p_values_with_ties():
    rng = np.random.default_rng(3)
    for trial in range(30):
        m = int(rng.integers(1, 300))
        p = np.round(np.concatenate([rng.uniform(size=m), rng.uniform(0, 1e-3, size=int(rng.integers(0, 20)))]), 4)
        q = float(rng.choice([0.01, 0.05, 0.2]))
        s = np.sort(p)
        k = max([i + 1 for i in range(len(s)) if s[i] <= (i + 1) * q / len(s)], default=0)
        assert int(bh_reject(p, q).sum()) == int(np.sum(p <= s[k - 1])) if k else not bh_reject(p, q).any()


def test_bh_edge_cases():
    assert bh_cutoff([], 0.1) == NOTHING
    assert bh_cutoff(np.arange(1, 101) / 100, 0.5) == NOTHING  # an all-null grid: nothing passes
    assert bh_cutoff([0.0, 0.0, 1.0], 0.05) == 0.0 and is_marked(0.0, cutoff=0.0)  # underflowed p-values
    assert not is_marked(0.0, cutoff=NOTHING)
    # untested samples (None, NaN) are no tests: they do not count in m
    assert bh_cutoff([0.02, None, float("nan"), 0.5], 0.05) == 0.02  # m = 2: 0.02 <= 1 x 0.05 / 2
    assert bh_cutoff([0.02, 0.03, 0.04, 0.5], 0.05) == NOTHING  # m = 4: 0.02 > 0.05 / 4
    with pytest.raises(ValueError):
        bh_cutoff([0.5, 1.5], 0.1)
    with pytest.raises(ValueError):
        bh_cutoff([0.5], 1.0)
    assert is_marked(None, alpha=0.1) is None and is_marked(0.05, alpha=0.1) and not is_marked(0.1, alpha=0.1)


def test_expected_false_for_alpha_and_fdr():
    p = [1e-9] * 10 + list(np.linspace(0.01, 1, 990))
    a = expected_false(p, alpha=1e-3)
    assert a["marked"] == 10 and a["tested"] == 1000 and a["expected_false"] == pytest.approx(1.0)
    f = expected_false(p, fdr=0.1)
    assert f["marked"] == int(bh_reject(p, 0.1).sum()) and f["expected_false"] == pytest.approx(0.1 * f["marked"])
