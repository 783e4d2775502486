"""Theory targets of issue 5, checked against closed forms.

Convention: the truth is model 0 and t counts fits (generation 1 trains on real data). The issue's
categorical "t = 0, 1, 10" are fits 1, 2, 11 here. Precise targets use the vectorised simulators of
``wmark.loop.theory`` (thousands of replicates); the engine is checked against the same closed forms
within 4 standard errors with fewer seeds, and at full preset size in the slow tests.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from wmark.loop import theory as th
from wmark.loop.config import LoopConfig
from wmark.loop.engine import run_loop
from wmark.loop.models.categorical import zipf_probs
from wmark.loop.presets import get_preset

REL = 0.05  # the issue's "within 5%"


def close(x: float, ref: float, rel: float = REL) -> bool:
    return abs(x - ref) <= rel * abs(ref)


# -- closed forms --------------------------------------------------------------------------------
def test_log_var_drift_is_expected_log_chi2():
    from scipy.integrate import quad
    from scipy.stats import chi2

    n = 20
    direct = quad(lambda x: math.log(x) * chi2.pdf(x, n - 1), 0, np.inf)[0] - math.log(n - 1)
    assert th.log_var_drift(n) == pytest.approx(direct, abs=1e-7)
    assert th.log_var_drift(n) == pytest.approx(-0.0535, rel=0.002)  # the issue's 0.0535 (-0.05355)


def test_exact_median_vs_issue_numbers():
    # the issue's 0.586 / 0.069 / 0.0047 are exp(t * drift), the geometric mean; the exact median
    # (Gil-Pelaez) is slightly higher (log chi^2 is left-skewed) but within 5% of them
    for t, issue in ((10, 0.586), (50, 0.069), (100, 0.0047)):
        med = th.var_quantile(0.5, 20, t)
        assert math.exp(t * th.log_var_drift(20)) == pytest.approx(issue, rel=0.01)
        assert close(med, issue), (t, med, issue)
        assert med > math.exp(t * th.log_var_drift(20))


def test_lam08_closed_forms():
    assert th.expected_var(10, 20, 0.8, bias_real=True) == pytest.approx(0.107, abs=5e-4)
    assert th.mean_var(500, 20, 0.8, bias_real=True) == pytest.approx(0.8 / (20 * 0.2))
    assert th.mean_var(500, 20, 0.8, bias_real=False) == pytest.approx(1 / (20 * 0.2))
    assert th.mean_sq_accumulate(10_000) == pytest.approx(math.pi ** 2 / 6, abs=2e-4)


# -- vectorised simulation vs closed form ----------------------------------------------------------
def test_gaussian_n20_log_variance_drift_and_medians():
    seeds = 6000
    mu, var = th.simulate_gaussian_1d(20, 100, seeds, seed=11)
    drift = th.log_var_drift(20)
    for t in (10, 50, 100):
        assert close(np.log(var[:, t]).mean() / t, drift), t
        # the exact median splits the replicates in half (binomial s.e. 0.5 / sqrt(S))
        below = (var[:, t] <= th.var_quantile(0.5, 20, t)).mean()
        assert abs(below - 0.5) < 4 * 0.5 / math.sqrt(seeds), (t, below)


@pytest.mark.parametrize("bias_real,var10,mu_limit", [(True, 0.107, 0.2), (False, 0.8 ** 9, 0.25)])
def test_gaussian_lam08(bias_real, var10, mu_limit):
    mu, var = th.simulate_gaussian_1d(20, 40, 20000, lam=0.8, bias_real=bias_real, seed=12)
    assert close(var[:, 10].mean(), var10)
    assert close(th.expected_var(10, 20, 0.8, bias_real=bias_real), var10, 0.005)
    assert close(mu[:, 40].var(), mu_limit)


def test_replace_vs_accumulate_mean_drift():
    n = 100
    mu_r, _ = th.simulate_gaussian_1d(n, 20, 8000, synthetic="replace", seed=13)
    mu_a, _ = th.simulate_gaussian_1d(n, 20, 8000, synthetic="accumulate", seed=14)
    for t in (1, 5, 10, 20):
        assert close(n * (mu_r[:, t] ** 2).mean(), float(t)), t
        assert close(n * (mu_a[:, t] ** 2).mean(), th.mean_sq_accumulate(t)), t
    assert close(n * (mu_a[:, 20] ** 2).mean(), math.pi ** 2 / 6, 0.06)


# -- the engine against the closed forms ---------------------------------------------------------
def _engine(**kw) -> "object":
    base = dict(family="gaussian", data={"d": 1}, model={"unbiased": True}, seed=5)
    return run_loop(LoopConfig.from_dict({**base, **kw}), progress=False)


def _within_se(values: np.ndarray, ref: float, k: float = 4.0) -> bool:
    se = values.std(ddof=1) / math.sqrt(len(values))
    return abs(values.mean() - ref) <= k * se


def test_engine_gaussian_n20():
    r = _engine(n_real=20, generations=10, seeds=200)
    lv = r.series("log_var", "none")
    assert _within_se(lv[10], 10 * th.log_var_drift(20))
    assert np.all(lv[0] == 0.0)


def test_engine_gaussian_lam08_biased_real():
    r = _engine(n_real=20, generations=10, seeds=200, lam=0.8, bias_real=True)
    assert _within_se(r.series("var", "none")[10], th.expected_var(10, 20, 0.8, bias_real=True))


@pytest.mark.parametrize("mode,ref", [("replace", th.mean_sq_replace), ("accumulate", th.mean_sq_accumulate)])
def test_engine_replace_accumulate(mode, ref):
    r = _engine(n_real=100, generations=8, seeds=200, synthetic=mode)
    m2 = 100 * r.series("mu", "none") ** 2
    for t in (1, 4, 8):
        assert _within_se(m2[t], ref(t)), (mode, t)


def test_engine_categorical_support():
    cfg = get_preset("theory-categorical").replace(seeds=30)
    r = run_loop(cfg, progress=False)
    sup = r.series("support", "none")  # [12, S]
    p = zipf_probs(1000, 1.1)
    assert np.all(np.diff(sup, axis=0) <= 0)  # support never grows
    assert close(sup[1].mean(), th.expected_support(p, 10_000), 0.01)    # 837.7 (issue: 798)
    assert close(sup[2].mean(), th.expected_support_2(p, 10_000), 0.01)  # 724.5 (issue: 691)
    assert close(sup[11].mean(), 369.98, 0.03)  # Monte Carlo, 2000 seeds: 369.98 +- 0.27 (issue: 359)


def test_engine_fresh_data_forgets_initial_size():
    starts, finals = [], []
    for n0 in (100, 1000):
        cfg = get_preset(f"theory-fresh-init{n0}").replace(seeds=2, generations=20)
        w2 = run_loop(cfg, progress=False).series("w2", "none")
        starts.append(w2[1].mean())
        finals.append(w2[-3:].mean())
        assert close(finals[-1], 3.5, 0.05), finals
    assert starts[0] - starts[1] > 3.0  # W2 5.7 vs 1.65 after generation 1 ...
    assert close(finals[0], finals[1], 0.05)  # ... and the same in the end


# -- full presets (slow) ---------------------------------------------------------------------------
@pytest.mark.slow
def test_preset_gaussian_n20_full():
    r = run_loop(get_preset("theory-gaussian-n20"), progress=False)
    lv = r.series("log_var", "none")
    drift = th.log_var_drift(20)
    for t in (10, 50, 100):
        assert close(lv[t].mean() / t, drift, 0.1 if t == 10 else REL)
        assert close(float(np.median(np.exp(lv[t]))), th.var_quantile(0.5, 20, t), 0.1)


@pytest.mark.slow
def test_preset_gaussian_lam08_full():
    r = run_loop(get_preset("theory-gaussian-lam08"), progress=False)
    assert close(r.series("var", "none")[10].mean(), 0.107)
    assert close(r.series("mu", "none")[30].var(), 0.2)


@pytest.mark.slow
@pytest.mark.parametrize("mode,ref", [("replace", th.mean_sq_replace), ("accumulate", th.mean_sq_accumulate)])
def test_preset_replace_accumulate_full(mode, ref):
    mu = run_loop(get_preset(f"theory-gaussian-{mode}"), progress=False).series("mu", "none")
    for t in (5, 10, 20):
        assert close(100 * (mu[t] ** 2).mean(), ref(t)), (mode, t)  # s.e. about 2.2%


@pytest.mark.slow
def test_preset_categorical_full():
    r = run_loop(get_preset("theory-categorical"), progress=False)
    sup = r.series("support", "none")
    p = zipf_probs(1000, 1.1)
    assert close(sup[1].mean(), th.expected_support(p, 10_000), 0.005)
    assert close(sup[2].mean(), th.expected_support_2(p, 10_000), 0.005)
    assert close(sup[11].mean(), 369.98, 0.01)


@pytest.mark.slow
def test_preset_fresh_full():
    ws = [run_loop(get_preset(f"theory-fresh-init{n0}"), progress=False).series("w2", "none")
          for n0 in (100, 1000)]
    assert abs(ws[0][1].mean() - ws[1][1].mean()) > 2.0  # different starts
    for w in ws:
        assert close(w[-1].mean(), 3.5)
