"""Watermark policies through the toy marker (a test device, not the product's watermark)."""
from __future__ import annotations

import numpy as np
import pytest

from wmark.keys import Key
from wmark.loop.config import LoopConfig
from wmark.loop.engine import POLICIES, run_loop
from wmark.loop.markers import Marker, ToyDither, get_marker


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.demo()


def test_toy_dither_mark_detect_strip(key):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 2))
    m = ToyDither(delta=0.5, width=0.2)
    assert isinstance(m, Marker)
    xm = m.mark(x, key, rng)
    assert xm.shape == x.shape and np.abs(xm - x).max() < 0.5
    assert m.detect(xm, key).all()
    assert abs(m.detect(x, key).mean() - 0.2 ** 2) < 0.01  # false positives: width ** d
    np.testing.assert_allclose(m.strip(xm, key), x, atol=1e-9)
    other = Key.from_passphrase("another key")
    assert m.detect(xm, other).mean() < 0.1  # the mark is keyed
    x1 = rng.standard_normal(1000)
    assert m.mark(x1, key, rng).shape == (1000,) and m.detect(m.mark(x1, key, rng), key).all()


def test_marker_registry():
    assert isinstance(get_marker("toy-dither", delta=1.0), ToyDither)
    with pytest.raises(ValueError, match="unknown marker"):
        get_marker("nope")
    with pytest.raises(ValueError, match="delta"):
        ToyDither(delta=-1)


def test_policy_functions(key):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 1))
    m = ToyDither(delta=0.5, width=0.1)
    assert POLICIES["none"](x, m, key, rng) is x
    assert m.detect(POLICIES["keep"](x, m, key, rng), key).all()
    stripped = POLICIES["strip"](x, m, key, rng)
    np.testing.assert_allclose(stripped, x, atol=1e-9)  # order kept
    assert len(POLICIES["drop"](x, m, key, rng)) == 0   # every marked sample is detected


def _run(**kw):
    base = dict(family="gaussian", data={"d": 2}, n_real=50, generations=8, seeds=24, seed=3,
                arms=["none", "keep", "strip", "drop"], marker="toy-dither",
                marker_params={"delta": 0.5, "width": 0.3}, key="demo")
    return run_loop(LoopConfig.from_dict({**base, **kw}), progress=False)


@pytest.fixture(scope="module")
def fully() -> object:
    return _run()


def test_none_is_never_marked(fully):
    plain = run_loop(fully.config.replace(arms=["none"], marker=None), progress=False)
    for metric in ("mu", "var", "w2"):
        np.testing.assert_array_equal(fully.series(metric, "none"), plain.series(metric, "none"))
    assert fully.series("train_marked", "none")[1:].mean() < 0.2  # only false positives (0.09)


def test_keep_trains_on_marks_and_amplifies_the_artifact(fully):
    assert np.all(fully.series("train_marked", "keep")[2:] == 1.0)
    excess = (fully.series("w2", "keep") - fully.series("w2", "none")).mean(1)
    assert excess[1] == 0.0  # generation 1 is real data for every arm
    assert excess[8] > 0.3 and excess[8] > 2 * excess[3]  # the mark's distortion compounds


def test_strip_matches_none(fully):
    for metric in ("mu", "var", "w2", "inherited", "train_marked"):
        np.testing.assert_allclose(fully.series(metric, "strip"), fully.series(metric, "none"),
                                   rtol=1e-7, atol=1e-9, err_msg=metric)


def test_drop_removes_detected_samples(fully):
    assert np.all(fully.series("n_train", "drop")[2:] == 0)  # the toy mark is always detected
    np.testing.assert_array_equal(fully.series("w2", "drop")[2:],
                                  np.repeat(fully.series("w2", "drop")[1:2], 7, 0))  # model frozen
    fresh = _run(loop="fresh_data", n_real=40, n_syn=60, seeds=4, generations=4)
    assert np.all(fresh.series("n_train", "drop")[2:] == 40)   # trains on the real part only
    assert np.all(fresh.series("train_marked", "drop")[2:] < 0.5)
    assert np.all(fresh.series("n_train", "keep")[2:] == 100)


def test_arms_share_randomness():
    r = _run(arms=[{"name": "a", "policy": "none"}, {"name": "b", "policy": "none"}], marker=None,
             seeds=3, generations=4)
    np.testing.assert_array_equal(r.series("w2", "a"), r.series("w2", "b"))


def test_a_memorising_model_inherits_the_kept_mark():
    """A KDE learner (bandwidth far below the mark's cell) learns the toy mark: the model's own,
    unmarked samples carry it under ``keep``; ``strip`` and ``none`` stay at the false-positive rate."""
    r = _run(data={"d": 1}, model={"kind": "kde", "bandwidth": 0.002}, marker_params={"delta": 0.5, "width": 0.1},
             seeds=6, generations=5, n_real=200)
    fpr = 0.1
    inh = {arm: r.series("inherited", arm)[1:].mean(1) for arm in ("none", "keep", "strip")}
    assert abs(inh["none"].mean() - fpr) < 0.03
    assert np.all(inh["keep"][1:] > 0.8)  # model t >= 2 was trained on marked samples
    np.testing.assert_allclose(inh["strip"], inh["none"], atol=1e-12)


def test_unknown_model_kind():
    with pytest.raises(ValueError, match="unknown gaussian-family model kind"):
        _run(model={"kind": "flow"}, seeds=1, generations=1)
