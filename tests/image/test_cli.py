"""CLI: wmark embed / detect / strip on files and folders."""
from __future__ import annotations

import json

import numpy as np
import pytest

from wmark.cli import main


@pytest.fixture
def setup(tmp_path, shared_data, demo_key_file):
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((shared_data / "train").glob("bsds_*.jpg"))[:2]:
        Image.open(p).convert("RGB").crop((0, 0, 384, 320)).save(src / (p.stem + ".png"))
    return tmp_path, src, demo_key_file


def test_cli_round_trip(setup, capsys):
    tmp, src, key = setup
    assert main(["embed", str(src), "-o", str(tmp / "marked"), "--key-file", str(key), "--payload", "0102030405ff"]) == 0
    marked = sorted((tmp / "marked").glob("*.png"))
    assert len(marked) == 2
    capsys.readouterr()
    assert main(["detect", str(tmp / "marked"), "--key-file", str(key), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and set(rows[0]) >= {"path", "detected", "p_value", "payload"}
    assert all(r["payload"] in (None, "0102030405ff") for r in rows)
    assert main(["detect", str(tmp / "marked"), "--key-file", str(key), "--json", "--payload", "0102030405ff"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["detected"] for r in rows)
    assert main(["strip", str(tmp / "marked"), "-o", str(tmp / "clean"), "--key-file", str(key),
                 "--payload", "0102030405ff"]) == 0
    capsys.readouterr()
    assert main(["detect", str(tmp / "clean"), "--key-file", str(key), "--json", "--payload", "0102030405ff"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert not any(r["detected"] for r in rows)
    from PIL import Image

    a = np.asarray(Image.open(src / marked[0].name), np.float64)
    b = np.asarray(Image.open(tmp / "clean" / marked[0].name), np.float64)
    assert 10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-12)) >= 55


def test_cli_never_overwrites_inputs(setup, capsys):
    tmp, src, key = setup
    assert main(["embed", str(src), "-o", str(src), "--key-file", str(key)]) == 2
    assert "overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_cli_bad_file(setup, capsys, content, error_lines):
    tmp, _, key = setup
    bad = tmp / "bad.png"
    bad.write_bytes(content)
    assert main(["detect", str(bad), "--key-file", str(key)]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("wmark: error:") and "bad.png" in err[0]


def test_cli_tiny_image(setup, capsys):
    from PIL import Image

    tmp, _, key = setup
    p = tmp / "tiny.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(p)
    assert main(["embed", str(p), "-o", str(tmp / "o"), "--key-file", str(key)]) == 1
    assert "64" in capsys.readouterr().err


def test_embed_warns_where_the_mark_will_not_be_found(setup, capsys):
    from PIL import Image

    tmp, src, key = setup
    p = tmp / "white.png"
    Image.fromarray(np.full((160, 160, 3), 255, np.uint8)).save(p)
    assert main(["embed", str(p), str(src), "-o", str(tmp / "o"), "--key-file", str(key), "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "will not be found" in ln]
    assert len(lines) == 1 and lines[0].startswith(str(p)) and "saturated" in lines[0]
    assert (tmp / "o" / "white.png").exists() and len(list((tmp / "o").glob("*.png"))) == 3


def test_batch_goes_on_past_bad_files(setup, capsys):
    tmp, src, key = setup
    (src / "empty.png").write_bytes(b"")
    (src / "zz_text.png").write_text("not an image")
    assert main(["embed", str(src), "-o", str(tmp / "m"), "--key-file", str(key), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert sum("empty.png" in e for e in err) == 1 and sum("zz_text.png" in e for e in err) == 1
    assert err[-1].startswith("marked 2/4 image(s)") and "2 of 4 failed" in err[-1]
    assert sorted(q.name for q in (tmp / "m").glob("*.png")) == sorted(q.name for q in src.glob("bsds_*.png"))
    assert main(["detect", str(src), "--key-file", str(key), "--json", "--no-progress"]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 4 and sum("error" in r for r in rows) == 2 and sum("p_value" in r for r in rows) == 2


def test_existing_outputs_and_planted_links_are_not_overwritten(setup, capsys):
    tmp, src, key = setup
    out = tmp / "m"
    out.mkdir()
    names = sorted(q.name for q in src.glob("*.png"))
    (out / names[0]).write_bytes(b"earlier result")
    victim = tmp / "victim.txt"
    victim.write_text("outside")
    (out / names[1]).symlink_to(victim)
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("--overwrite") == 2
    assert (out / names[0]).read_bytes() == b"earlier result" and victim.read_text() == "outside"
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress", "--overwrite"]) == 0
    assert victim.read_text() == "outside" and not (out / names[1]).is_symlink()
    from PIL import Image

    assert all(Image.open(out / n).size == (384, 320) for n in names)
    assert [q.name for q in out.iterdir() if q.name.startswith(".")] == [".wmark-manifest.jsonl"]  # no temp, no lock
