"""The text arm of the loop: the LM family, the KGW text marker, the de-bias strip, a tiny run."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wmark.loop.config import LoopConfig
from wmark.loop.engine import RECORDS_FILE, load_result, run_loop
from wmark.loop.models import get_family
from wmark.loop.models.text import TextSample, make_model, make_source, training_stream
from wmark.loop.text_marker import TextKGW, debias_weights
from wmark import stats
from wmark.loop import text_metrics as TM


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(shared_data) -> str:
    return str(shared_data / "text")


@pytest.fixture(scope="module")
def source(corpus):
    return make_source(length=16, n_val=4, corpus=corpus)


def rng(i: int = 0) -> np.random.Generator:
    return np.random.default_rng(i)


def test_family_fit_sample_shapes_and_checkpoint(source, checkpoint_round_trip):
    assert get_family("text").source_is_model is False
    real = source.sample(8, 1.0, rng(0))
    assert len(real) == 8 and all(s.ids.shape == (16,) and s.ids.dtype == torch.long for s in real)
    model = make_model(source, steps=2, batch_size=2, seq_len=16)
    fitted = model.fit(real, rng(1))
    assert model.state is None and fitted.state is not None  # fit returns a new model
    out = fitted.sample(5, 0.8, rng(2))
    assert len(out) == 5 and all(s.ids.shape == (16,) and not s.marked for s in out)
    ids = torch.stack([s.ids for s in out])
    assert int(ids.min()) >= 0 and int(ids.max()) < fitted.vocab_size
    clone = checkpoint_round_trip(fitted)  # weights survive, samples identical
    assert torch.equal(torch.stack([s.ids for s in clone.sample(5, 0.8, rng(2))]), ids)
    m = get_family("text").evaluate(fitted, source, real, rng(3), {"n_eval": 4})
    assert m["train_ess"] == 1.0
    assert set(m) == {"train_ess", "sample_ppl", "val_ppl", "distinct_1", "distinct_2", "support", "tail_mass"}
    assert all(math.isfinite(v) for v in m.values()) and 0 < m["distinct_1"] <= 1


def test_training_stream_layout():
    a = TextSample(torch.tensor([5, 6, 7]))
    b = TextSample(torch.tensor([8, 9]), weights=torch.tensor([0.5, 2.0]))
    ids, w = training_stream([a, b], eos=1)
    assert ids.tolist() == [1, 5, 6, 7, 1, 8, 9]
    assert w.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.5, 2.0]  # separators never trained on


def test_text_metrics_closed_forms():
    ids = torch.tensor([[1, 2, 1, 2], [3, 3, 3, 3]])
    assert TM.distinct_n(ids, 1) == pytest.approx(3 / 8)
    assert TM.distinct_n(ids, 2) == pytest.approx(3 / 6)  # (1,2) (2,1) (3,3)
    assert TM.support_size(ids) == 3
    head = TM.head_tokens(np.array([0.0, 0.5, 0.3, 0.2]), 1)
    assert head.tolist() == [False, True, False, False]
    assert TM.tail_token_mass(ids, head) == pytest.approx(6 / 8)
    assert stats.binom_log10_sf(10, 10, 0.25) == pytest.approx(10 * math.log10(0.25))
    with pytest.raises(ValueError, match="n must be"):
        TM.distinct_n(ids, 0)


@pytest.fixture(scope="module")
def marker() -> TextKGW:
    return TextKGW(scheme="kgw-lefthash", gamma=0.25, delta=3.0)


def test_marker_detects_marked_not_unmarked(source, marker, demo_key):
    model = make_model(source)  # the shipped weights
    model.length = 40
    marked = marker.sample_marked(model, 6, 1.0, rng(4), demo_key)
    plain = model.sample(6, 1.0, rng(4))
    assert all(s.marked for s in marked)
    assert marker.detect(marked, demo_key).all()
    assert not marker.detect(plain, demo_key).any()
    assert marker.mark(marked, demo_key) == marked
    with pytest.raises(ValueError, match="marked while it is generated"):
        marker.mark(plain, demo_key)
    from wmark.keys import Key

    assert not marker.detect(marked, Key.from_passphrase("another key")).any()  # keyed
    m = marker.metrics(marked, demo_key)
    assert m["green_frac"] > 0.5 and m["radio_log10p"] < -10
    assert abs(marker.metrics(plain, demo_key)["green_z"]) < 3


@pytest.mark.parametrize("scheme", ["kgw-lefthash", "kgw-selfhash"])
def test_green_matches_the_processor(scheme, demo_key):
    """strip's green indicators are exactly the tokens the processor boosted in their context."""
    mk = TextKGW(scheme=scheme, gamma=0.25, delta=2.0)
    sch = mk.scheme_for(demo_key)
    ids = torch.randint(0, sch.vocab_size, (3, 12), generator=torch.Generator().manual_seed(0))
    g = mk.green([TextSample(r) for r in ids], demo_key)
    full = torch.cat([torch.full((3, 1), mk.eos_id), ids], 1)
    for p in range(12):
        expect = sch.green_mask(full[:, :p + 1]).gather(1, ids[:, p:p + 1])[:, 0]
        assert torch.equal(g[:, p], expect), p


def test_strip_weights_closed_form(demo_key, marker):
    gamma, delta = 0.25, 3.0
    z0 = 1 + gamma * (math.exp(delta) - 1)
    w = debias_weights(torch.tensor([True, False]), gamma, delta)
    assert w.tolist() == pytest.approx([z0 * math.exp(-delta), z0])
    # importance weighting undoes the bias exactly: for any p, p_marked * w is proportional to p
    V = 64
    p = torch.distributions.Dirichlet(torch.ones(V, dtype=torch.float64)).sample()
    green = torch.rand(V, generator=torch.Generator().manual_seed(1)) < gamma
    pm = p * torch.exp(delta * green.double())
    pm /= pm.sum()
    q = pm * debias_weights(green, gamma, delta).double()
    torch.testing.assert_close(q / q.sum(), p)
    # strip sets exactly these weights on real samples
    s = [TextSample(torch.tensor([10, 20, 30, 40]))]
    out = marker.strip(s, demo_key)
    expect = debias_weights(marker.green(s, demo_key), gamma, delta)
    assert torch.equal(out[0].weights, expect[0]) and torch.equal(out[0].ids, s[0].ids)


def _tiny(corpus, **kw) -> LoopConfig:
    base = dict(family="text", data={"length": 12, "n_val": 2, "corpus": corpus},
                model={"steps": 2, "batch_size": 2, "seq_len": 16}, n_real=6, generations=2, seeds=1,
                arms=["none", "keep", "strip", "drop"], marker="text-kgw",
                marker_params={"delta": 3.0, "alpha": 0.05}, eval={"n_eval": 3, "n_mark": 3}, key="demo")
    return LoopConfig.from_dict({**base, **kw})


def test_tiny_run_end_to_end_with_resume(tmp_path, corpus):
    c = _tiny(corpus)
    whole = run_loop(c, tmp_path / "whole", progress=False)
    assert list(whole.generations()) == [1, 2]
    for name in ("sample_ppl", "distinct_2", "inherited", "green_z", "radio_log10p", "train_marked"):
        assert np.isfinite(whole.series(name, "keep")).all(), name
    assert whole.series("train_marked", "keep")[1, 0] >= 0.5  # synthetic, marked, (mostly) detected
    assert whole.series("n_train", "drop")[1, 0] < 6            # detected samples are dropped
    part = tmp_path / "part"

    def stop(t):
        if t == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_loop(c, part, progress=False, on_generation=stop)
    assert not load_result(part).complete
    resumed = run_loop(None, part, resume=True, progress=False)
    assert resumed.complete and resumed.records == whole.records
    assert (part / RECORDS_FILE).read_text() == (tmp_path / "whole" / RECORDS_FILE).read_text()


@pytest.mark.parametrize("bad,msg", [
    ({"data": {"length": 0}}, "length"),
    ({"data": {"colour": 1}}, "bad 'data' or 'model' parameters"),
    ({"model": {"steps": 2, "layers": 3}}, "bad parameters for the text model"),
    ({"model": {"lr": -1.0}}, "'lr'"),
    ({"marker_params": {"scheme": "gumbel"}}, "scheme must be one of"),
    ({"marker_params": {"delta": 0.0}}, "delta"),
    ({"marker_params": {"gamma": 1.5}}, "gamma"),
])
def test_bad_text_config(tmp_path, corpus, bad, msg):
    c = _tiny(corpus)
    d = c.to_dict()
    for k, v in bad.items():
        d[k] = {**d[k], **v}
    with pytest.raises(ValueError, match=msg):
        run_loop(LoopConfig.from_dict(d), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_presets_build():
    from wmark.loop.presets import get_preset

    for name in ("demo-text", "text-mad"):
        c = get_preset(name)
        assert c.family == "text" and c.marker == "text-kgw" and c.generations >= 5
        assert {a.policy for a in c.arms} >= {"none", "keep", "strip"}


@pytest.mark.slow
def test_strip_removes_the_inherited_green_excess(corpus):
    """Retrained on its own marked samples, the LM inherits the green bias under keep; with the
    de-bias weights its unmarked samples show no green excess (pooled over seeds)."""
    c = _tiny(corpus, data={"length": 48, "n_val": 4, "corpus": corpus}, n_real=48, generations=3, seeds=3,
              model={"steps": 12, "lr": 2e-3, "batch_size": 8, "seq_len": 64}, arms=["none", "keep", "strip"],
              eval={"n_eval": 4, "n_mark": 48})
    r = run_loop(c, progress=False)
    z = {a: r.series("radio_z", a)[2:].mean() for a in ("none", "keep", "strip")}
    gf = {a: r.series("green_frac", a)[2:].mean() for a in ("none", "keep", "strip")}
    assert z["keep"] > 4 and gf["keep"] > 0.33
    assert abs(z["strip"]) < 2.5 and abs(gf["strip"] - 0.25) < 0.03
    assert abs(z["none"]) < 2.5


def test_two_processes_write_identical_records(tmp_path, corpus):
    """Two runs of one config in fresh processes (threads fixed by the config) write byte-identical
    ``generations.jsonl``: every draw comes from the counter-based streams, none from global state."""
    import json
    import subprocess
    import sys

    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(_tiny(corpus, threads=2, generations=3).to_dict()))
    outs = []
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-m", "wmark.cli", "loop", "--config", str(cfg), "--out", str(tmp_path / name),
                        "--no-progress", "--no-plots"], check=True, capture_output=True, timeout=600)
        outs.append((tmp_path / name / RECORDS_FILE).read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 3 * 4


def test_threads_are_set_for_the_run_and_restored(corpus):
    before = torch.get_num_threads()
    seen = []
    run_loop(_tiny(corpus, threads=3, generations=1), progress=False, on_generation=lambda t: seen.append(torch.get_num_threads()))
    assert seen == [3, 3] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        _tiny(corpus, threads=0)
