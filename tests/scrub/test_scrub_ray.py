"""The Ray engine on a real local Ray cluster (2 CPUs, this machine only) gives the local engine's
manifest and byte-identical outputs; its batches are the local engine's batches, whole and in order."""
from __future__ import annotations

import json
import sys

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from wmark.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def cluster():
    """A private local Ray instance (2 CPUs, never an existing cluster) for this module; the engine
    uses it and leaves it up."""
    if ray.is_initialized():  # someone else's: use it as it is
        yield
        return
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _run(src, out, key_file, *extra) -> int:
    return main(["scrub", str(src), "-o", str(out), "--key-file", str(key_file), "--no-progress", *extra])


def _closing(out) -> dict:
    s = json.loads((out / "summary.json").read_text())
    return {"counts": s["counts"], "decision": s["decision"], "expected_false": s["expected_false"]}


def _same(kit, a, b) -> None:
    ra, rb = kit.rows(a), kit.rows(b)
    assert list(ra) == list(rb)  # same samples, same order
    for k in ra:
        assert ra[k] == rb[k], k
    assert kit.tree(a) == kit.tree(b)  # same outputs, byte for byte
    assert _closing(a) == _closing(b)


def test_ray_images_equal_local(tmp_path, kit, key_file, cluster):
    src = kit.folder(tmp_path / "in")
    before = kit.digests(src)
    args = ("--action", "strip", "--batch-size", "3", "--chunk-size", "5")
    assert _run(src, tmp_path / "local", key_file, *args) == 0
    assert _run(src, tmp_path / "ray", key_file, *args, "--engine", "ray", "--jobs", "2") == 0
    _same(kit, tmp_path / "local", tmp_path / "ray")
    rows = kit.rows(tmp_path / "ray")
    assert {r["action"] for r in rows.values()} == {"kept", "stripped", "error"}
    assert json.loads((tmp_path / "ray" / "summary.json").read_text())["engine"] == "ray"
    assert kit.digests(src) == before
    assert ray.is_initialized()  # the caller's Ray is left running


def test_ray_text_equal_local(tmp_path, kit, key_file, cluster):
    """Text (JSON Lines) with de-bias weights for the marked documents, bad lines as error rows."""
    src = kit.jsonl(tmp_path / "in" / "docs.jsonl", sorted(kit.texts))
    args = ("--action", "strip", "--batch-size", "4", "--manifest-format", "jsonl")
    assert _run(src, tmp_path / "local", key_file, *args) == 0
    assert _run(src, tmp_path / "ray", key_file, *args, "--engine", "ray", "--jobs", "2") == 0
    _same(kit, tmp_path / "local", tmp_path / "ray")
    rows = kit.rows(tmp_path / "ray")
    assert sum(r["action"] == "stripped" for r in rows.values()) == 3
    assert sum(r["action"] == "error" for r in rows.values()) == 2  # the bad JSON line, the one without text


@pytest.mark.slow
def test_ray_text_fdr_equal_local(tmp_path, kit, key_file, cluster):
    """Two passes (Benjamini–Hochberg): pass 2's scrubber decides by the cutoff."""
    src = kit.jsonl(tmp_path / "in" / "docs.jsonl", sorted(kit.texts))
    args = ("--action", "drop", "--fdr", "0.05", "--batch-size", "4")
    assert _run(src, tmp_path / "local", key_file, *args) == 0
    assert _run(src, tmp_path / "ray", key_file, *args, "--engine", "ray", "--jobs", "2") == 0
    _same(kit, tmp_path / "local", tmp_path / "ray")
    assert sum(r["action"] == "dropped" for r in kit.rows(tmp_path / "ray").values()) == 3


def test_constructor_kwargs_rebuild_the_scrubber(key):
    """What each actor is built from: the same settings, for an alpha and for a cutoff scrubber."""
    from wmark.scrub.ray_engine import constructor_kwargs
    from wmark.scrub.scrubber import Scrubber

    for s in (Scrubber(key, kind="text", action="strip", alpha=0.01, scheme_params={"gamma": 0.5}, min_window=30),
              Scrubber(key, kind="image", action="drop", alpha=None, cutoff=-1.0, jpeg_quality=80)):
        s.cutoff = 3e-4 if s.cutoff is not None else None  # as the pipeline sets pass 2's cutoff
        kw = constructor_kwargs(s)
        assert kw["key"] is key and "threads" in kw
        assert Scrubber(**kw).settings() == s.settings()


def _probe(key, tasks, **engine):
    from ray import cloudpickle

    from wmark.scrub.ray_engine import RayEngine

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Probe travels to the actors by value
    try:
        feed = ((t, None if ids is None else {"id": ids, "data": ["x"] * len(ids)}) for t, ids in tasks)
        with RayEngine(**engine) as eng:
            got = list(eng.run(Probe(key, kind="text"), feed))
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert [t for t, _ in got] == [t for t, _ in tasks]
    return got


def _check_batches(tasks, got) -> None:
    for (t, ids), (_, res) in zip(tasks, got):
        if ids is None:
            assert res is None
            continue
        assert res["id"] == ids
        assert res["batch"] == ["|".join(ids)] * len(ids)  # the call saw exactly this batch


def test_ray_batches_whole_and_in_order(key, cluster):
    """Each actor call gets exactly one of the pipeline's batches, whatever their sizes, with one
    actor or two; results come back in order, empty units pass through."""
    tasks = [("a", [f"a{i}" for i in range(3)]), ("b", None), ("c", [f"c{i}" for i in range(5)]),
             ("d", [f"d{i}" for i in range(2)]), ("e", [f"e{i}" for i in range(5)]), ("f", None),
             ("g", [f"g{i}" for i in range(1)])]
    _check_batches(tasks, _probe(key, tasks, jobs=2))
    _check_batches(tasks, _probe(key, tasks, jobs=1))


def test_pack_round_trip():
    """A batch's columns (bytes, None, floats, strings) survive the packing the engine sends."""
    from wmark.scrub.ray_engine import pack, unpack

    batch = {"id": ["a", "b/c"], "data": [b"\x00\xff" * 3, None], "p_value": [0.5, None], "ext": [".png", ""]}
    assert unpack(pack(batch)) == batch


def test_ray_missing_is_one_line(monkeypatch):
    import builtins

    from wmark.scrub import ray_engine

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValueError, match=r"pip install 'wmark\[ray\]'") as ei:
        ray_engine.RayEngine(jobs=1)
    assert isinstance(ei.value, ImportError) and "\n" not in str(ei.value)


def _probe_base():
    from wmark.scrub.scrubber import Scrubber

    return Scrubber


class Probe(_probe_base()):
    """Records the ids of the batch each call got (no model)."""

    def __call__(self, batch):
        ids = [str(i) for i in batch["id"]]
        return {"id": ids, "batch": ["|".join(ids)] * len(ids)}
