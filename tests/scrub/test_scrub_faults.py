"""Faults: kill -9 at several points then --resume equals the uninterrupted run; one run per output
folder; a resume with other settings or a changed input is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wmark.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _args(src, out, key_file, *extra) -> list[str]:
    return ["scrub", str(src), "-o", str(out), "--key-file", str(key_file), "--no-progress", "--chunk-size", "2",
            *extra]


FAULT_CLI = Path(__file__).with_name("fault_cli.py")  # the CLI with the pipeline's test seam set to kill


def _killed(args: list[str], fault: str):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(FAULT_CLI), fault, *args], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == -9, (fault, proc.returncode, proc.stderr[-2000:])


def _final(out):
    return (out / "manifest.parquet").read_bytes()


@pytest.fixture
def dataset(tmp_path, kit):
    names = ["m0.png", "u0.png", "m1.jpg", "u1.jpg", "trunc.png", "m2.png", "u2.png"]
    return kit.folder(tmp_path / "in", names=names)


# 7 files in units of 2: 4 units. (fault, units committed when it fires); with --fdr, pass 1 (no outputs)
# counts too: "outputs:5" is the first unit of pass 2, written but not committed
@pytest.mark.parametrize("extra,faults", [
    (("--action", "strip"), [("outputs:2", 1), ("commit:3", 3), ("manifest:1", 4)]),
    (("--action", "drop", "--fdr", "0.05"), [("commit:2", 2), ("decide:1", 4), ("outputs:5", 4)]),
])
def test_kill_9_then_resume_equals_the_uninterrupted_run(tmp_path, dataset, kit, key_file, extra, faults, capsys):
    before = kit.digests(dataset)
    ref = tmp_path / "ref"
    assert main(_args(dataset, ref, key_file, *extra)) == 0
    want_rows, want_files = kit.rows(ref), kit.tree(ref)
    assert len(want_rows) == 7
    for k, (fault, committed) in enumerate(faults):
        out = tmp_path / f"k{k}"
        _killed(_args(dataset, out, key_file, *extra), fault)
        first = "detect" if "--fdr" in extra else "act"
        journal = (out / ".wmark-scrub" / f"{first}.jsonl").read_text().splitlines()
        assert sum("commit" in json.loads(ln) for ln in journal) == committed, fault
        assert not (out / "manifest.parquet").exists()
        got = kit.tree(out)
        assert all(got[n] == want_files[n] for n in got if n in want_files), fault  # whatever is there is right
        assert set(got) <= set(want_files)
        assert main(_args(dataset, out, key_file, *extra)) == 2  # not without --resume
        capsys.readouterr()
        assert main(_args(dataset, out, key_file, *extra, "--resume", "--json")) == 0
        if "--fdr" not in extra:
            assert json.loads(capsys.readouterr().out)["resumed_units"] == committed
        assert kit.rows(out) == want_rows and _final(out) == _final(ref), fault
        assert kit.tree(out) == want_files, fault
        assert not list(out.rglob(".*.tmp")) and not (out / ".wmark.lock").exists()
    assert kit.digests(dataset) == before


def test_a_resume_after_a_torn_journal_line_redoes_that_unit(tmp_path, dataset, kit, key_file):
    out = tmp_path / "out"
    assert main(_args(dataset, out, key_file, "--action", "drop")) == 0
    want = kit.rows(out), kit.tree(out)
    journal = out / ".wmark-scrub" / "act.jsonl"
    lines = journal.read_bytes().split(b"\n")
    journal.write_bytes(b"\n".join(lines[:2]) + b"\n" + lines[2][:40])  # a kill mid-append
    for p in out.rglob("*"):
        if p.is_file() and p.suffix == ".jpg":
            p.unlink()  # an output lost after its commit: that unit is redone too
    assert main(_args(dataset, out, key_file, "--action", "drop", "--resume", "--json")) == 0
    assert (kit.rows(out), kit.tree(out)) == want


def test_resume_refuses_other_settings_and_a_changed_input(tmp_path, dataset, kit, key_file, capsys):
    out = tmp_path / "out"
    assert main(_args(dataset, out, key_file, "--action", "drop")) == 0
    capsys.readouterr()
    assert main(_args(dataset, out, key_file, "--action", "strip", "--resume")) == 2
    assert "action" in capsys.readouterr().err
    (dataset / "new.png").write_bytes(kit.pictures["u3.jpg"][0])
    assert main(_args(dataset, out, key_file, "--action", "drop", "--resume")) == 2
    assert "input changed" in capsys.readouterr().err


def test_a_second_concurrent_run_is_refused(tmp_path, dataset, key_file, capsys):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".wmark.lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                     "command": "scrub", "started": "now"}))
        assert main(_args(dataset, out, key_file, "--action", "drop")) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use by 'wmark scrub'" in err
        assert not any(p.name != ".wmark.lock" for p in out.iterdir())
    finally:
        holder.kill()
        holder.wait()
    assert main(_args(dataset, out, key_file, "--action", "drop")) == 0  # the holder is gone: stale lock taken


def test_jobs_2_gives_the_rows_and_bytes_of_jobs_1(tmp_path, kit, key_file):
    src = tmp_path / "shards"
    kit.shard(src / "000.tar", ["u0.png", "m0.png", "u1.jpg"])
    kit.shard(src / "001.tar", ["u2.png", "u3.jpg"])  # nothing to change: copied whole
    a, b = tmp_path / "j1", tmp_path / "j2"
    assert main(_args(src, a, key_file, "--action", "strip")) == 0
    assert main(_args(src, b, key_file, "--action", "strip", "--jobs", "2", "--batch-size", "1")) == 0
    assert kit.rows(a) == kit.rows(b) and kit.tree(a) == kit.tree(b) and _final(a) == _final(b)
    assert (b / "001.tar").read_bytes() == (src / "001.tar").read_bytes()
    assert kit.rows(b)["000.tar/s001_m0"]["action"] == "stripped"


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tmp_path, dataset, kit, key_file):
    import time

    import numpy as np

    args = lambda out, *x: _args(dataset, out, key_file, "--action", "strip", "--chunk-size", "1", *x)  # noqa: E731
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "wmark.cli", *args(ref)], check=True, capture_output=True)
    span = time.monotonic() - t0
    rng = np.random.default_rng(5)
    for trial in range(4):
        out = tmp_path / f"r{trial}"
        proc = subprocess.Popen([sys.executable, "-m", "wmark.cli", *args(out)], stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.3, 0.95)) * span)
        proc.kill()
        proc.wait()
        assert main(args(out, "--resume")) == 0  # killed before the run took the folder: a fresh start
        assert kit.rows(out) == kit.rows(ref) and kit.tree(out) == kit.tree(ref)
        assert (out / "manifest.parquet").read_bytes() == (ref / "manifest.parquet").read_bytes()
