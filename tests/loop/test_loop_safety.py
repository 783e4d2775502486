"""Run folders that never run code, survive kill -9, hold one run at a time, and key each run afresh."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import socket
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wmark.assets import LOCK_NAME, FolderLockedError  # noqa: E402
from wmark.cli import main  # noqa: E402
from wmark.keys import Key  # noqa: E402
from wmark.loop import state  # noqa: E402
from wmark.loop.config import LoopConfig  # noqa: E402
from wmark.loop.engine import (CHECKPOINT_FILE, CONFIG_FILE, KEY_FILE, LEGACY_CHECKPOINT_FILE,  # noqa: E402
                               RECORDS_FILE, load_checkpoint, load_result, run_loop)
from wmark.loop.report import write_report  # noqa: E402


def cfg(**kw) -> LoopConfig:
    base = dict(family="gaussian", data={"d": 2}, n_real=20, generations=4, seeds=2,
                arms=["none", "keep", "strip"], marker="toy-dither", eval={"n_mark": 50})
    return LoopConfig.from_dict({**base, **kw})


class _Plant:
    """Unpickling this creates the file ``path``: what a planted payload could do."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _records_text(result) -> str:
    return "".join(r.to_json() + "\n" for r in result.records)


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    return msg


# -- no code from data ----------------------------------------------------------------------------------
def test_planted_pickle_is_refused_and_never_run(tmp_path, capsys):
    decoy = tmp_path / "decoy"
    pickle.loads(pickle.dumps(_Plant(decoy)))
    assert decoy.exists()  # the payload works when unpickled...
    run = tmp_path / "run"
    run_loop(cfg(), run, progress=False)
    (run / CHECKPOINT_FILE).unlink()
    marker = tmp_path / "pwned"
    (run / LEGACY_CHECKPOINT_FILE).write_bytes(pickle.dumps({"format": 1, "t": 2, "replicates": _Plant(marker)}))
    with pytest.raises(ValueError, match="pickle from an older wmark") as err:
        run_loop(None, run, resume=True, progress=False)
    assert str(run / LEGACY_CHECKPOINT_FILE) in _one_line(err.value)
    assert main(["loop", "--resume", "--out", str(run), "--no-progress", "--no-plots"]) == 2
    e = capsys.readouterr().err
    assert "pickles can run code and are not loaded" in e and e.count("\n") == 1, e
    assert not marker.exists()  # ...but the loop never unpickles it


def test_checkpoint_holding_an_object_is_refused(tmp_path):
    run = tmp_path / "run"
    run_loop(cfg(), run, progress=False)
    marker = tmp_path / "pwned"
    torch.save({"format": 2, "t": 1, "replicates": [_Plant(marker)]}, run / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="holds objects other than tensors") as err:
        run_loop(None, run, resume=True, progress=False)
    assert str(run / CHECKPOINT_FILE) in _one_line(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "format", "foreign-class", "arms"])
def test_damaged_checkpoint_is_one_line(tmp_path, damage, capsys):
    run = tmp_path / "run"
    c = cfg(generations=3)
    run_loop(c, run, progress=False)
    path = run / CHECKPOINT_FILE
    blob = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "format":
        torch.save({"format": 99, "t": 1, "replicates": []}, path)
    elif damage == "foreign-class":
        torch.save({"format": 2, "t": 1, "replicates": [
            {state.TAG: "object", "class": "os.system", "fields": {}}]}, path)
    else:  # a checkpoint of another run's arms
        t, reps = load_checkpoint(path)
        for r in reps:
            r.models["other"] = r.models.pop("keep")
        from wmark.loop.engine import save_checkpoint

        save_checkpoint(path, t, reps)
    with pytest.raises(ValueError, match="checkpoint") as err:
        run_loop(c.replace(generations=4), run, resume=True, progress=False)
    assert str(path) in _one_line(err.value)
    assert main(["loop", "--resume", "--out", str(run), "--generations", "4", "--no-progress"]) == 2
    e = capsys.readouterr().err
    assert str(path) in e and e.count("\n") == 1, e


def test_state_round_trip_keeps_types_and_bits(checkpoint_round_trip):
    sd = OrderedDict(w=torch.randn(3, 2), b=torch.zeros(2))
    sd._metadata = OrderedDict({"": {"version": 1}})
    obj = {"a": np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2], "f": np.float64(0.1), "t": (1, "x", None),
           "l": [np.array(2.5), True, 3.0], "nan": float("nan"), "sd": sd, 4: "int key",
           "bool": np.array([True, False])}
    got = checkpoint_round_trip(obj)
    assert got["a"].dtype == np.int32 and np.array_equal(got["a"], obj["a"])
    assert type(got["f"]) is np.float64 and got["f"] == obj["f"]
    assert got["t"] == (1, "x", None) and got[4] == "int key" and np.isnan(got["nan"])
    assert got["l"][0].shape == () and got["l"][0] == 2.5 and got["l"][1:] == [True, 3.0]
    assert list(got["sd"]) == ["w", "b"] and torch.equal(got["sd"]["w"], sd["w"])
    assert got["sd"]._metadata == sd._metadata and got["bool"].dtype == bool
    with pytest.raises(TypeError, match="cannot store"):
        state.encode(_Plant("x"))
    with pytest.raises(TypeError, match="dtype"):
        state.encode(np.array(["a"], dtype=object))


def test_models_of_every_numpy_family_round_trip(checkpoint_round_trip):
    from wmark.loop.models import get_family

    rng = np.random.default_rng(0)
    for name, model_params in (("gaussian", {}), ("gaussian", {"kind": "kde"}), ("categorical", {}), ("gmm", {})):
        fam = get_family(name)
        src = fam.make_source()
        m = fam.make_model(src, **model_params).fit(src.sample(200, 1.0, rng), np.random.default_rng(1))
        clone = checkpoint_round_trip(m)
        assert type(clone) is type(m)
        a, b = m.sample(50, 0.9, np.random.default_rng(2)), clone.sample(50, 0.9, np.random.default_rng(2))
        assert a.tobytes() == b.tobytes(), name


# -- the key ----------------------------------------------------------------------------------------
def test_default_key_is_fresh_saved_0600_and_recorded_by_fingerprint(tmp_path):
    c = cfg(generations=3)
    assert c.key is None
    a, b = run_loop(c, progress=False), run_loop(c, progress=False)
    assert a.key_fingerprint and b.key_fingerprint and a.key_fingerprint != b.key_fingerprint
    run = tmp_path / "run"
    r = run_loop(c, run, progress=False)
    key_path = run / KEY_FILE
    assert (key_path.stat().st_mode & 0o777) == 0o600
    key = Key.from_file(key_path)
    secret = key_path.read_text().strip()
    saved = json.loads((run / CONFIG_FILE).read_text())
    assert saved["key"] is None and saved["key_fingerprint"] == key.fingerprint == r.key_fingerprint
    report = write_report(r, plots=False)
    assert key.fingerprint in report.read_text()
    for p in run.rglob("*"):
        if p.is_file() and p != key_path:
            assert secret.encode() not in p.read_bytes(), p
    # the same key reproduces the run; resuming uses the folder's key
    assert _records_text(run_loop(c.replace(key=str(key_path)), progress=False)) == (run / RECORDS_FILE).read_text()
    longer = run_loop(c.replace(generations=5), run, resume=True, progress=False)
    assert longer.records == run_loop(c.replace(generations=5, key=str(key_path)), progress=False).records
    assert load_result(run).key_fingerprint == key.fingerprint
    # a run's config.json can be reused as a config (the fingerprint is not an input)
    assert LoopConfig.from_json(run / CONFIG_FILE) == c.replace(generations=5)


def test_unmarked_run_has_no_key(tmp_path):
    r = run_loop(cfg(arms=["none"], marker=None), tmp_path / "run", progress=False)
    assert r.key_fingerprint is None and not (tmp_path / "run" / KEY_FILE).exists()


def test_explicit_keys_keep_working_and_a_changed_key_is_refused(tmp_path):
    demo = run_loop(cfg(key="demo"), progress=False)
    assert demo.records == run_loop(cfg(key="demo"), progress=False).records
    assert demo.key_fingerprint == Key.demo().fingerprint
    kf = tmp_path / "k.hex"
    Key.generate().save(kf)
    run = tmp_path / "run"
    run_loop(cfg(key=str(kf)), run, progress=False)
    assert not (run / KEY_FILE).exists()
    kf.unlink()
    Key.generate().save(kf)
    with pytest.raises(ValueError, match="not the one this run used") as err:
        run_loop(cfg(key=str(kf), generations=5), run, resume=True, progress=False)
    _one_line(err.value)
    own = tmp_path / "own"
    run_loop(cfg(), own, progress=False)
    (own / KEY_FILE).unlink()
    with pytest.raises(ValueError, match="key.hex.*missing"):
        run_loop(None, own, resume=True, progress=False)


@pytest.mark.parametrize("bad", ["", 3])
def test_bad_key_spec(bad):
    with pytest.raises(ValueError, match="'key'"):
        cfg(key=bad)


# -- one run per folder -----------------------------------------------------------------------------------
def test_a_held_folder_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(cfg(key="demo").to_dict()))
    seen = {}

    def intrude(t):
        if t != 1:
            return
        assert (run / LOCK_NAME).is_file()
        with pytest.raises(FolderLockedError) as err:
            run_loop(cfg(key="demo"), run, resume=True, progress=False)
        seen["api"] = _one_line(err.value)
        with pytest.raises(FolderLockedError):
            write_report(run, plots=False)
        seen["cli"] = [main(["loop", "--config", str(conf), "--out", str(run), *extra, "--no-progress"])
                       for extra in ([], ["--resume"])]
        seen["err"] = capsys.readouterr().err

    whole = run_loop(cfg(key="demo"), run, progress=False, on_generation=intrude)
    assert str(run) in seen["api"] and "loop" in seen["api"] and str(os.getpid()) in seen["api"]
    assert seen["cli"] == [2, 2] and seen["err"].count("\n") == 2 and "in use" in seen["err"], seen["err"]
    assert not (run / LOCK_NAME).exists()
    assert whole.records == run_loop(cfg(key="demo"), progress=False).records
    assert json.loads((run / CONFIG_FILE).read_text())["generations"] == 4


def test_lock_and_temp_files_do_not_count_as_content(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
    (run / ".config.json.abc.tmp").write_text("half")
    r = run_loop(cfg(), run, progress=False)
    assert r.complete and not (run / LOCK_NAME).exists() and not list(run.glob(".*.tmp"))
    assert load_result(run).records == r.records


# -- kill -9 ----------------------------------------------------------------------------------------------
def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _start(conf: Path, out: Path, resume: bool = False) -> subprocess.Popen:
    argv = [sys.executable, "-m", "wmark.cli", "loop", "--config", str(conf), "--out", str(out),
            "--no-progress", "--no-plots"] + (["--resume"] if resume else [])
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_at(p: subprocess.Popen, out: Path, rnd: random.Random, lines: int | None, early: float) -> None:
    """SIGKILL ``p`` once ``generations.jsonl`` has ``lines`` lines (plus a random few ms), or after
    ``early`` seconds when ``lines`` is None; a run that finishes first is left alone."""
    deadline = time.monotonic() + 60
    if lines is None:
        time.sleep(early)
    else:
        while _count_lines(out / RECORDS_FILE) < lines and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        time.sleep(rnd.uniform(0.0, 0.004))
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)


def _check_folder(out: Path) -> None:
    """Every file a killed run leaves parses (the lock and temp files are the next run's to clear)."""
    for p in sorted(out.iterdir()) if out.is_dir() else []:
        if p.name == LOCK_NAME or (p.name.startswith(".") and p.name.endswith(".tmp")):
            continue
        if p.name == CONFIG_FILE:
            json.loads(p.read_text())
        elif p.name == RECORDS_FILE:
            for line in p.read_text().splitlines():
                json.loads(line)
            assert p.read_bytes().endswith(b"\n") or not p.read_bytes()
        elif p.name == CHECKPOINT_FILE:
            load_checkpoint(p)
        elif p.name == "report.md":  # the run had finished
            assert p.read_text().startswith("# Loop run")
        elif p.name == KEY_FILE:
            Key.from_file(p)
            assert (p.stat().st_mode & 0o777) == 0o600
        else:
            raise AssertionError(f"unexpected file {p.name}")


def _kill_trials(tmp_path: Path, trials: list[tuple[int | None, float]], kills_per_trial: int = 1) -> None:
    c = cfg(generations=120, seeds=2)
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(c.to_dict()))
    lines_total = (c.generations + 1) * len(c.arms)
    killed_mid_loop = 0
    for i, (lines, early) in enumerate(trials):
        rnd = random.Random(i)
        out = tmp_path / f"run{i}"
        for k in range(kills_per_trial):
            p = _start(conf, out, resume=k > 0)
            target = None if lines is None else min(lines_total - 1, lines + k * 40)
            _kill_at(p, out, rnd, target, early)
            assert p.returncode in (0, -signal.SIGKILL), p.stderr.read().decode()
            killed_mid_loop += p.returncode == -signal.SIGKILL and 0 < _count_lines(out / RECORDS_FILE) < lines_total
            _check_folder(out)
        assert main(["loop", "--config", str(conf), "--out", str(out), "--resume", "--no-progress",
                     "--no-plots"]) == 0
        assert not (out / LOCK_NAME).exists() and not list(out.glob(".*.tmp"))
        reference = run_loop(c.replace(key=str(out / KEY_FILE)), progress=False)
        assert (out / RECORDS_FILE).read_text() == _records_text(reference), f"trial {i}"
        assert load_result(out).complete
    assert killed_mid_loop >= 1


def test_kill_9_at_random_points_then_resume(tmp_path):
    rnd = random.Random(16)
    trials = [(None, rnd.uniform(0.05, 0.6))] + [(rnd.randint(1, 300), 0.0) for _ in range(3)]
    _kill_trials(tmp_path, trials)


@pytest.mark.slow
def test_kill_9_many_times_and_during_resumes(tmp_path):
    rnd = random.Random(1616)
    trials = [(None, rnd.uniform(0.05, 2.0)) for _ in range(3)] + [(rnd.randint(1, 360), 0.0) for _ in range(5)]
    _kill_trials(tmp_path, trials, kills_per_trial=3)


def test_kill_9_with_a_channel_then_resume(tmp_path, shared_data):
    """A run with a channel (random crop, noise, JPEG: seeded per generation) killed after its first
    generation resumes to the records of an uninterrupted run, channel kept in config.json."""
    root = shared_data / "mnist"
    if not (root / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST not found in {root}")
    channel = [{"attack": "crop_random", "strength": 0.6}, {"attack": "noise", "strength": 0.2},
               {"attack": "jpeg", "strength": 0.1875}]
    c = LoopConfig.from_dict(dict(
        family="image", data={"size": 64, "root": str(root), "n_pool": 256},
        model={"steps_init": 4, "steps": 2, "batch_size": 16, "ch": 8}, n_real=24, generations=3, seeds=1,
        arms=["none", "keep", "strip"], marker="image-wm", eval={"n_eval": 24, "n_mark": 12}, key="demo",
        threads=1, channel=channel))
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(c.to_dict()))
    out = tmp_path / "run"
    p = _start(conf, out)
    _kill_at(p, out, random.Random(15), len(c.arms), 0.0)  # after generation 1's records
    # two more generations take seconds, the kill follows the records within milliseconds
    assert p.returncode == -signal.SIGKILL, p.stderr.read().decode()
    assert _count_lines(out / RECORDS_FILE) < (c.generations) * len(c.arms)
    _check_folder(out)
    assert json.loads((out / CONFIG_FILE).read_text())["channel"] == channel
    assert main(["loop", "--config", str(conf), "--out", str(out), "--resume", "--no-progress", "--no-plots"]) == 0
    reference = run_loop(c, progress=False)
    assert (out / RECORDS_FILE).read_text() == _records_text(reference)
    assert load_result(out).complete and load_result(out).config == c
