"""``wmark loop`` round trip and errors; report and plots."""
from __future__ import annotations

import json

from wmark.cli import main


def test_list(capsys):
    assert main(["loop", "--list"]) == 0
    out = capsys.readouterr().out
    assert "demo-gaussian" in out and "theory-categorical" in out and "toy-dither" in out


def test_round_trip_resume_and_refusal(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["loop", "--preset", "demo-gaussian", "--out", str(out), "--seeds", "2", "--generations", "3",
            "--no-progress"]
    assert main(args) == 0
    for name in ("config.json", "generations.jsonl", "checkpoint.pt", "report.md", "plots/w2.png"):
        assert (out / name).is_file(), name
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seeds"] == 2 and cfg["generations"] == 3
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 4  # t = 0..3, four arms
    report = (out / "report.md").read_text()
    assert "| w2 | keep |" in report and "![w2](plots/w2.png)" in report
    assert "## Policy effects at t = 3" in report and "| w2 | strip |" in report
    from wmark.loop.engine import load_result
    from wmark.loop.report import policy_effects

    eff = {(e.metric, e.arm): e for e in policy_effects(load_result(out))}
    assert abs(eff["w2", "strip"].mean) < 1e-9 and eff["w2", "keep"].mean != 0.0
    assert eff["n_train", "drop"].mean == -50
    before = (out / "generations.jsonl").read_text()
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "generations.jsonl").read_text() == before
    assert main(args + ["--resume", "--no-plots"]) == 0  # complete already: report only
    assert (out / "generations.jsonl").read_text() == before
    assert main(["loop", "--resume", "--out", str(out), "--generations", "4", "--no-progress", "--no-plots"]) == 0
    assert len((out / "generations.jsonl").read_text().splitlines()) == 5 * 4


def test_config_file_and_errors(tmp_path, capsys):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"family": "categorical", "data": {"k": 30}, "n_real": 100, "generations": 2,
                                "seeds": 1, "name": "tiny"}))
    assert main(["loop", "--config", str(good), "--out", str(tmp_path / "o"), "--no-progress", "--no-plots"]) == 0
    cases = [
        (["loop"], "give --preset"),
        (["loop", "--preset", "nope", "--out", str(tmp_path / "x")], "unknown preset"),
        (["loop", "--config", str(tmp_path / "missing.json")], "not found"),
        (["loop", "--preset", "demo-gaussian", "--seeds", "0", "--out", str(tmp_path / "y")], "seeds"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"family": "gaussian", "loops": 3}))
    cases.append((["loop", "--config", str(bad), "--out", str(tmp_path / "z")], "unknown config key"))
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
