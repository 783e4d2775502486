"""Engine: loop types and sizes, run folders, resume after an interruption, config errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from wmark.loop.config import LoopConfig
from wmark.loop.engine import CHECKPOINT_FILE, RECORDS_FILE, generator, load_result, run_loop


def cfg(**kw) -> LoopConfig:
    base = dict(family="gaussian", data={"d": 1}, n_real=30, n_syn=20, n_init=40, generations=4, seeds=2, key="demo")
    return LoopConfig.from_dict({**base, **kw})


@pytest.mark.parametrize("loop,mode,expected", [
    ("fully_synthetic", "replace", [40, 20, 20, 20]),
    ("fully_synthetic", "accumulate", [40, 60, 80, 100]),
    ("synthetic_augmentation", "replace", [40, 60, 60, 60]),
    ("synthetic_augmentation", "accumulate", [40, 60, 80, 100]),
    ("fresh_data", "replace", [40, 50, 50, 50]),
    ("fresh_data", "accumulate", [40, 90, 140, 190]),
])
def test_training_set_sizes(loop, mode, expected):
    r = run_loop(cfg(loop=loop, synthetic=mode), progress=False)
    n = r.series("n_train", "none")
    assert np.isnan(n[0]).all()
    assert n[1:, 0].tolist() == expected


def test_generator_streams_independent_and_reproducible():
    a = generator(0, 1, 2, "sample").standard_normal(3)
    assert np.array_equal(a, generator(0, 1, 2, "sample").standard_normal(3))
    for other in (generator(0, 1, 2, "real"), generator(0, 2, 2, "sample"), generator(1, 1, 2, "sample"),
                  generator(0, 1, 3, "sample")):
        assert not np.array_equal(a, other.standard_normal(3))


def _interrupt_at(t_stop):
    def hook(t):
        if t == t_stop:
            raise KeyboardInterrupt

    return hook


@pytest.mark.parametrize("family,extra", [
    ("gaussian", dict(loop="fresh_data", synthetic="accumulate", arms=["none", "keep", "strip", "drop"],
                      marker="toy-dither", data={"d": 2})),
    ("categorical", dict(data={"k": 50, "exponent": 1.1}, n_real=200, n_syn=200, n_init=200)),
])
def test_resume_after_interruption_matches_uninterrupted(tmp_path, family, extra):
    c = cfg(family=family, generations=6, seeds=3, **extra)
    whole = run_loop(c, tmp_path / "whole", progress=False)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run_loop(c, part, progress=False, on_generation=_interrupt_at(3))
    assert not load_result(part).complete
    # a kill between the records and the checkpoint leaves a torn / extra line: it is discarded
    with open(part / RECORDS_FILE, "a") as f:
        f.write('{"t": 4, "arm": "none", "metr')
    with pytest.raises(ValueError, match="not empty"):
        run_loop(c, part, progress=False)
    resumed = run_loop(None, part, resume=True, progress=False)
    assert resumed.complete and resumed.records == whole.records
    assert (part / RECORDS_FILE).read_text() == (tmp_path / "whole" / RECORDS_FILE).read_text()
    assert load_result(part).records == whole.records


def test_in_memory_equals_folder_run_and_resume_extends(tmp_path):
    c = cfg(generations=3)
    mem = run_loop(c, progress=False)
    disk = run_loop(c, tmp_path / "r", progress=False)
    assert mem.records == disk.records
    assert (tmp_path / "r" / CHECKPOINT_FILE).is_file()
    longer = run_loop(c.replace(generations=5), tmp_path / "r", resume=True, progress=False)
    assert longer.records == run_loop(c.replace(generations=5), progress=False).records
    assert json.loads((tmp_path / "r" / "config.json").read_text())["generations"] == 5
    with pytest.raises(ValueError, match="differs"):
        run_loop(c.replace(n_real=31), tmp_path / "r", resume=True, progress=False)
    with pytest.raises(ValueError, match="differs"):
        run_loop(c.replace(generations=2), tmp_path / "r", resume=True, progress=False)


def test_never_overwrites(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        run_loop(cfg(), tmp_path, progress=False)
    with pytest.raises(ValueError, match="no config.json"):
        run_loop(cfg(), tmp_path, resume=True, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.parametrize("bad,msg", [
    ({"loop": "half"}, "unknown loop type"),
    ({"synthetic": "merge"}, "'synthetic'"),
    ({"n_real": 0}, "n_real"),
    ({"generations": 2.5}, "generations"),
    ({"lam": -1}, "lam"),
    ({"seed": -3}, "seed"),
    ({"family": "vae"}, "unknown model family"),
    ({"arms": ["keep"]}, "need a 'marker'"),
    ({"arms": ["none"], "marker": "nope"}, "unknown marker"),
    ({"arms": ["none", "none"]}, "unique"),
    ({"arms": [{"name": "x", "policy": "burn"}]}, "unknown policy"),
    ({"arms": []}, "non-empty"),
    ({"model": [1]}, "JSON object"),
    ({"colour": "red"}, "unknown config key"),
])
def test_bad_config(bad, msg):
    with pytest.raises(ValueError, match=msg):
        LoopConfig.from_dict({"family": "gaussian", **bad})


def test_config_json_round_trip(tmp_path):
    c = cfg(arms=["none", {"name": "k", "policy": "keep"}], marker="toy-dither", marker_params={"delta": 1.0})
    assert LoopConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"preset": "demo-gaussian", "seeds": 2}))
    got = LoopConfig.from_json(p)
    assert got.seeds == 2 and got.name == "demo-gaussian"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LoopConfig.from_json(p)
    with pytest.raises(FileNotFoundError):
        LoopConfig.from_json(tmp_path / "missing.json")


@pytest.mark.parametrize("bad,msg", [
    ({"data": {"dims": 3}}, "bad 'data' or 'model' parameters"),
    ({"model": {"unbiassed": True}}, "bad parameters for model kind"),
    ({"arms": ["keep"], "marker": "toy-dither", "marker_params": {"size": 2}}, "bad 'marker_params'"),
    ({"arms": ["keep"], "marker": "toy-dither", "key": "/nonexistent/key"}, "key file not found"),
])
def test_bad_parameters_fail_before_writing(tmp_path, bad, msg):
    with pytest.raises(ValueError, match=msg):
        run_loop(cfg(**bad), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_finished_run_without_checkpoint_keeps_records(tmp_path):
    c = cfg(generations=3, seeds=1)
    kept = run_loop(c, tmp_path / "kept", progress=False)
    run_loop(c, tmp_path / "gone", progress=False, keep_checkpoint=False)
    assert (tmp_path / "kept" / CHECKPOINT_FILE).is_file()
    assert not (tmp_path / "gone" / CHECKPOINT_FILE).exists()
    assert (tmp_path / "gone" / RECORDS_FILE).read_bytes() == (tmp_path / "kept" / RECORDS_FILE).read_bytes()
    assert np.array_equal(load_result(tmp_path / "gone").series("w2", "none"), kept.series("w2", "none"))
