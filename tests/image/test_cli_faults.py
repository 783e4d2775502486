"""Faults of the writing image commands: kill -9 mid-run, re-runs that continue, concurrent runs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from wmark.cli import main

@pytest.fixture
def folder(tmp_path, demo_key_file):
    from PIL import Image

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    base = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    for i in range(16):
        small = np.roll(base, i, axis=0)
        Image.fromarray(small).resize((192, 160), Image.BICUBIC).save(src / f"im{i:02d}.png")
    return tmp_path, src, demo_key_file


def _cmd(command: str, src, out, key) -> list[str]:
    return [sys.executable, "-m", "wmark.cli", command, str(src), "-o", str(out), "--key-file", str(key),
            "--no-progress"]


def _decodes(path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def _pngs(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_rerun_skips_finished_outputs_and_redoes_changed_ones(folder, capsys):
    tmp, src, key = folder
    out = tmp / "m"
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 0
    first = _pngs(out)
    capsys.readouterr()
    (out / "im03.png").unlink()
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 0
    assert "marked 1/16 image(s), 15 already done" in capsys.readouterr().err
    assert _pngs(out) == first
    # a finished output edited by hand is not finished work: refused (exists), not silently kept
    (out / "im05.png").write_bytes(b"edited")
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "im05.png" in err and "--overwrite" in err
    # another payload is another job: nothing counts as done
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress",
                 "--payload", "0102030405ff"]) == 1
    assert "16 of 16 failed" in capsys.readouterr().err


def test_a_held_folder_is_refused(folder, capsys, error_lines):
    tmp, src, key = folder
    out = tmp / "m"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".wmark.lock").write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename,
                                                     "command": "embed", "started": "now"}))
        assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 2
        err = error_lines(capsys.readouterr().err)
        assert len(err) == 1 and f"pid {holder.pid}" in err[0] and str(out) in err[0]
        assert not list(out.glob("*.png"))
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and the next run takes the folder
    assert main(["embed", str(src), "-o", str(out), "--key-file", str(key), "--no-progress"]) == 0
    assert len(list(out.glob("*.png"))) == 16 and not (out / ".wmark.lock").exists()


def test_two_concurrent_runs_never_mix(folder):
    tmp, src, key = folder
    out = tmp / "m"
    a = subprocess.Popen(_cmd("embed", src, out, key), stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(_cmd("embed", src, out, key) + ["--payload", "0102030405ff"], stderr=subprocess.PIPE,
                         text=True)
    (ra, ea), (rb, eb) = (a.wait(), a.stderr.read()), (b.wait(), b.stderr.read())
    # the loser is refused at the lock (2), or, where the winner finished first, at every existing file (1)
    assert sorted((ra, rb)) in ([0, 1], [0, 2]), (ea, eb)
    if 2 in (ra, rb):
        assert "is in use by 'wmark embed'" in (ea if ra else eb)
    rows = [json.loads(line) for line in (out / ".wmark-manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 16 and len({json.dumps(r["params"]) for r in rows}) == 1
    assert all(_decodes(p) for p in out.glob("*.png"))


@pytest.mark.parametrize("command", ["embed", "strip"])
def test_kill_9_leaves_only_complete_files_and_the_rerun_finishes(folder, command):
    tmp, src, key = folder
    if command == "strip":  # strip marked images
        assert main(["embed", str(src), "-o", str(tmp / "marked"), "--key-file", str(key), "--no-progress"]) == 0
        src = tmp / "marked"
    ref = tmp / "ref"
    t0 = time.monotonic()
    subprocess.run(_cmd(command, src, ref, key), check=True, capture_output=True)
    span = time.monotonic() - t0
    expected = _pngs(ref)
    rng = np.random.default_rng(1)
    for trial in range(3):
        out = tmp / f"out{trial}"
        proc = subprocess.Popen(_cmd(command, src, out, key), stderr=subprocess.DEVNULL)
        time.sleep(float(rng.uniform(0.4, 1.0)) * span)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            assert all(_decodes(p) for p in out.glob("*.png"))
            got = _pngs(out)
            assert all(got[n] == expected[n] for n in got)  # whatever is there is whole and right
        done = subprocess.run(_cmd(command, src, out, key), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert _pngs(out) == expected
        assert not list(out.glob(".*.tmp")) and not (out / ".wmark.lock").exists()


def test_16_bit_colour_and_metadata_survive_embed_and_strip(tmp_path, demo_key_file):
    from PIL import Image

    from wmark.image import io as imio

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:160, 0:192]
    ramp = (yy * 150 + xx * 120)[..., None] + np.array([0, 9000, 18000])
    pix = (ramp + rng.normal(0, 2000, (160, 192, 3))).clip(0, 65535)
    src = tmp_path / "in"
    src.mkdir()
    (src / "deep.png").write_bytes(imio.png_bytes(imio.Image16(pix.astype(np.uint16), {"dpi": (300, 300)})))
    key = demo_key_file
    assert main(["embed", str(src), "-o", str(tmp_path / "m"), "--key-file", str(key), "--no-progress"]) == 0
    marked = imio.load(tmp_path / "m" / "deep.png")
    assert isinstance(marked, imio.Image16) and marked.pixels.dtype == np.uint16
    assert np.abs(marked.pixels.astype(float) - pix.astype(np.uint16)).max() > 0  # marked, still 16 bits deep
    with Image.open(tmp_path / "m" / "deep.png") as im:
        assert tuple(round(v) for v in im.info["dpi"]) == (300, 300)
    assert main(["strip", str(tmp_path / "m"), "-o", str(tmp_path / "c"), "--key-file", str(key),
                 "--no-progress"]) == 0
    assert isinstance(imio.load(tmp_path / "c" / "deep.png"), imio.Image16)


def _bad_files(folder) -> dict[str, str]:
    """Write one file per kind of bad input; returns name -> words its error line must hold."""
    import io
    import struct
    import zlib

    from PIL import Image

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 12000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    (folder / "bomb.png").write_bytes(bomb)
    (folder / "empty.png").write_bytes(b"")
    (folder / "magic.png").write_bytes(b"GIF89a but not really an image at all")
    buf = io.BytesIO()
    Image.fromarray(np.full((128, 128, 3), 120, np.uint8)).save(buf, format="JPEG")
    (folder / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    frames = [Image.fromarray(np.full((96, 96, 3), v, np.uint8)) for v in (0, 255)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.zeros((96, 96), bool)).save(folder / "bilevel.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "tiny.png")
    return {"bomb.png": "exceeds the limit", "empty.png": "empty", "magic.png": "", "cut.jpg": "truncated",
            "anim.gif": "frame", "bilevel.png": "1-bit", "tiny.png": "64"}


@pytest.mark.parametrize("command", ["detect", "embed"])
def test_every_bad_input_is_one_line_and_the_good_ones_are_done(folder, capsys, command):
    tmp, src, key = folder
    bad = _bad_files(src)
    args = [command, str(src), "--key-file", str(key), "--no-progress"]
    args += ["-o", str(tmp / "out")] if command == "embed" else ["--json"]
    assert main(args) == 1
    cap = capsys.readouterr()
    errors = [e for e in cap.err.splitlines() if e.startswith("wmark: error:")]
    assert len(errors) == len(bad)
    for name, words in bad.items():
        line = next(e for e in errors if name in e)
        assert words.lower() in line.lower(), line
    assert cap.err.splitlines()[-1].endswith(f"{len(bad)} of {16 + len(bad)} failed")
    if command == "embed":
        assert len(list((tmp / "out").glob("*.png"))) == 16
    else:
        rows = [json.loads(line) for line in cap.out.splitlines()]
        assert sum("error" in r for r in rows) == len(bad) and sum("p_value" in r for r in rows) == 16
