"""wmark.text.detect: the window search against every window tested one by one."""
from __future__ import annotations

import numpy as np
import pytest

from wmark.stats import bonferroni
from wmark.text.detect import window_layout, window_lengths, window_search
from wmark.text.nulls import BinomialNull, GammaNull, NormalNull


def every_window(n: int, min_window: int) -> list[tuple[int, int]]:
    """(start, size) of every window, in the order sizes then starts, built one by one."""
    out = []
    for size in window_lengths(n, min_window):
        step = max(1, size // 4)
        starts = list(range(0, n - size + 1, step))
        if starts[-1] != n - size:
            starts.append(n - size)
        out += [(s, size) for s in starts]
    return out


@pytest.mark.parametrize("n", [1, 7, 49, 50, 51, 70, 71, 200, 1234])
def test_layout_lists_every_window_once(n):
    starts, sizes, first = window_layout(n, 50)
    assert list(zip(starts.tolist(), sizes.tolist())) == every_window(n, 50)
    assert first.tolist() == [i for i in range(len(sizes)) if i == 0 or sizes[i] != sizes[i - 1]]


@pytest.mark.parametrize("null,draw", [
    (BinomialNull(0.25), lambda r, n, m: (r.random(n) < 0.3 + 0.5 * m).astype(np.float64)),
    (GammaNull(), lambda r, n, m: r.exponential(1.1 + m, n)),
    (NormalNull(0.0, 1.0), lambda r, n, m: r.normal(0.1 + m, 1.0, n)),
])
def test_best_window_is_the_smallest_p_over_all_windows(null, draw):
    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(1, 900))
        s = draw(rng, n, 0)
        if trial % 3 == 0:  # a marked span
            a = int(rng.integers(0, n))
            s[a:a + 120] = draw(rng, len(s[a:a + 120]), 1)
        pos = np.sort(rng.choice(3 * n, n, replace=False))
        wins = every_window(n, 20)
        sums = np.array([s[a:a + k].sum() for a, k in wins])
        pv = null.p_value(sums, np.array([k for _, k in wins]))
        i = int(np.argmin(pv))
        w = window_search(s, pos, null, 20)
        assert w.p_value == pytest.approx(float(pv[i]), rel=1e-9, abs=1e-300)
        assert w.num_windows == len(wins)
        assert w.p_value_corrected == pytest.approx(float(bonferroni(pv[i], len(wins))), rel=1e-9, abs=1e-300)
        a, k = wins[i]
        assert (w.start, w.end, w.num_scored) == (int(pos[a]), int(pos[a + k - 1]) + 1, k)
