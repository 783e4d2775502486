"""Metric functions (closed forms and sanity) and the small generative models."""
from __future__ import annotations

import math

import numpy as np
import pytest

from wmark.loop import metrics as M
from wmark.loop.config import LoopConfig
from wmark.loop.engine import run_loop
from wmark.loop.models import family_names, get_family, register_family
from wmark.loop.models.base import Family, concat, put, size, take
from wmark.loop.models.categorical import temper, zipf_probs
from wmark.loop.models.gaussian import gaussian_fit, gaussian_sample
from wmark.loop.models.gmm import make_model as gmm_model, make_source as gmm_source


def test_gaussian_w2_closed_forms():
    assert M.gaussian_w2([0.0], [[4.0]], [1.0], [[1.0]]) == pytest.approx(math.sqrt(1 + 1))
    a = np.diag([1.0, 4.0])
    b = np.diag([9.0, 1.0])
    assert M.gaussian_w2_sq([0, 0], a, [0, 3], b) == pytest.approx(9 + (1 - 3) ** 2 + (2 - 1) ** 2)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 3))
    s1, s2 = q @ q.T + np.eye(3), np.cov(rng.standard_normal((3, 10)))
    assert M.gaussian_w2_sq(np.zeros(3), s1, np.ones(3), s2) == pytest.approx(
        M.gaussian_w2_sq(np.ones(3), s2, np.zeros(3), s1), rel=1e-8)
    assert M.gaussian_w2(np.zeros(3), s1, np.zeros(3), s1) == pytest.approx(0.0, abs=1e-6)


def test_frechet_and_precision_recall():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1500, 2))
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert M.frechet_distance(x, x + [3.0, 0.0]) == pytest.approx(9.0, rel=1e-6)
    assert M.precision_recall(x, x) == (1.0, 1.0)
    assert M.precision_recall(x, x + 100.0) == (0.0, 0.0)
    two = np.concatenate([x[:750] - 10, x[750:] + 10])
    p, r = M.precision_recall(two, x[:750] - 10)  # fake covers one of two modes
    assert p > 0.95 and 0.4 < r < 0.6
    with pytest.raises(ValueError, match="k=5"):
        M.knn_radii(x[:5], 5)


def test_categorical_metrics():
    p = np.array([0.5, 0.25, 0.25, 0.0])
    assert M.support_size(p) == 3
    assert M.entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
    assert M.tail_mass(p, [False, True, True, True]) == 0.5
    assert M.total_variation(p, np.full(4, 0.25)) == pytest.approx(0.25)


def test_gaussian_fit_sample_batched():
    rng = np.random.default_rng(2)
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    x = gaussian_sample(np.zeros((3, 2)), np.broadcast_to(cov, (3, 2, 2)), 20000, 0.5, rng)
    assert x.shape == (3, 20000, 2)
    mu, c = gaussian_fit(x)
    np.testing.assert_allclose(c, np.broadcast_to(0.5 * cov, (3, 2, 2)), atol=0.05)
    singular = gaussian_sample(np.zeros(2), np.array([[1.0, 1.0], [1.0, 1.0]]), 100, 1.0, rng)
    np.testing.assert_allclose(singular[:, 0], singular[:, 1], atol=1e-6)


def test_temperature():
    p = zipf_probs(10, 1.1)
    assert temper(p, 1.0) is p
    q = temper(np.append(p, 0.0) / 1.0, 0.5)
    assert q[-1] == 0.0 and M.entropy(q) < M.entropy(p) and q.sum() == pytest.approx(1.0)


def test_gmm_em_recovers_ring():
    src = gmm_source(k=8)
    rng = np.random.default_rng(3)
    model = gmm_model(src).fit(src.sample(2000, 1.0, rng), rng)
    p, r = M.precision_recall(src.sample(1000, 1.0, rng), model.sample(1000, 1.0, rng))
    assert p > 0.85 and r > 0.85
    assert model.sample(10, 0.5, rng).shape == (10, 2)


def test_gmm_loop_runs():
    c = LoopConfig(family="gmm", data={"k": 4}, n_real=200, generations=3, seeds=1, eval={"n_eval": 300})
    r = run_loop(c, progress=False)
    for m in ("precision", "recall", "fd"):
        v = r.series(m, "none")
        assert np.isfinite(v).all()
    assert 0.0 <= r.series("recall", "none").min() <= 1.0


@pytest.mark.slow
def test_gmm_fully_synthetic_recall_falls_fresh_bounds_fd():
    from wmark.loop.presets import get_preset

    c = get_preset("demo-gmm").replace(arms=["none"], marker=None, generations=15, seeds=4, n_real=200)
    rec = run_loop(c, progress=False).series("recall", "none").mean(1)
    assert rec[-1] < rec[1] - 0.05
    fresh = run_loop(get_preset("gmm-fresh").replace(generations=15), progress=False).series("fd", "none").mean(1)
    assert fresh[-1] < 0.5


def test_sample_ops_numpy_list_torch():
    a = np.arange(6).reshape(3, 2)
    mask = np.array([True, False, True])
    assert size(a) == 3 and take(a, mask).tolist() == [[0, 1], [4, 5]]
    assert concat([a, None, a]).shape == (6, 2)
    assert put(a, mask, -take(a, mask)).tolist() == [[0, -1], [2, 3], [-4, -5]]
    seqs = [[1], [2, 3], [4]]
    assert take(seqs, mask) == [[1], [4]] and concat([seqs, seqs]) == seqs + seqs
    assert put(seqs, mask, [[9], [8]]) == [[9], [2, 3], [8]] and size(seqs) == 3
    torch = pytest.importorskip("torch")
    t = torch.arange(6).reshape(3, 2)
    assert size(t) == 3 and take(t, mask).tolist() == [[0, 1], [4, 5]]
    assert concat([t, t]).shape == (6, 2)
    assert put(t, mask, -take(t, mask)).tolist() == [[0, -1], [2, 3], [-4, -5]]


def test_family_registry():
    assert {"gaussian", "categorical", "gmm"} <= set(family_names())
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("nope")
    g = get_family("gaussian")
    with pytest.raises(ValueError, match="already registered"):
        register_family(Family("gaussian", g.make_model, g.make_source, g.evaluate))
    register_family(Family("gauss-copy", g.make_model, g.make_source, g.evaluate))
    r = run_loop(LoopConfig(family="gauss-copy", generations=2, seeds=1), progress=False)
    assert r.series("w2", "none").shape == (3, 1)
