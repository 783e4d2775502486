"""``wmark demo``: the showcase runs its loop sections and leaves reports, not checkpoints."""
from __future__ import annotations

from wmark.cli import main
from wmark.loop.engine import CHECKPOINT_FILE, RECORDS_FILE


def test_quick_demo_loop_leaves_no_checkpoint(tmp_path, monkeypatch, shared_data, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--only", "loop", "--no-progress"]) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert [r.name.rsplit("-", 2)[0] for r in runs] == ["demo-image", "demo-text"]
    for r in runs:
        assert (r / RECORDS_FILE).is_file() and (r / "report.md").is_file()
        assert not (r / CHECKPOINT_FILE).exists()
    out = capsys.readouterr().out
    assert "kept the mark" in out and "demo finished" in out
