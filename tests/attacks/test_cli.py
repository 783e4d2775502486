"""``wmark attack list | apply``: round trip and bad inputs."""
from __future__ import annotations

import numpy as np
from PIL import Image

from wmark.cli import main


def _png(path, size=(80, 64), mode="RGB"):
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def test_list(capsys):
    assert main(["attack", "list"]) == 0
    out = capsys.readouterr().out
    for word in ("jpeg", "quality", "round(90 - 80 s)", "lm_substitute", "pgd", "needs decoder"):
        assert word in out


def test_apply_round_trip(tmp_path, capsys):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "b.png", mode="L")
    out = tmp_path / "out"
    assert main(["attack", "apply", "crop_center", "--strength", "1", str(a), str(b), "-o", str(out)]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 2
    with Image.open(written[0]) as im:
        assert im.size == (40, 32) and im.mode == "RGB"
    with Image.open(written[1]) as im:
        assert im.mode == "L"
    # same seed -> same bytes; strength 0 of an identity attack -> the input pixels
    assert main(["attack", "apply", "noise", "-s", "0.5", str(a), "-o", str(tmp_path / "n1"), "--seed", "3"]) == 0
    assert main(["attack", "apply", "noise", "-s", "0.5", str(a), "-o", str(tmp_path / "n2"), "--seed", "3"]) == 0
    n1, n2 = (next((tmp_path / d).iterdir()) for d in ("n1", "n2"))
    assert n1.read_bytes() == n2.read_bytes()
    assert main(["attack", "apply", "blur", "-s", "0", str(a), "-o", str(tmp_path / "z")]) == 0
    z = next((tmp_path / "z").iterdir())
    assert np.array_equal(np.asarray(Image.open(z)), np.asarray(Image.open(a)))


def test_apply_bad_inputs(tmp_path, capsys):
    a = _png(tmp_path / "a.png")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    cases = [
        (["attack", "apply", "jpeg", "-s", "0.5", str(txt), "-o", str(tmp_path / "o")], "not a readable image"),
        (["attack", "apply", "jpeg", "-s", "0.5", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o")], "no such file"),
        (["attack", "apply", "jpeg", "-s", "1.5", str(a), "-o", str(tmp_path / "o")], "strength"),
        (["attack", "apply", "nope", "-s", "0.5", str(a), "-o", str(tmp_path / "o")], "unknown image attack"),
        (["attack", "apply", "pgd", "-s", "0.5", str(a), "-o", str(tmp_path / "o")], "needs decoder"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written on a failure


def test_apply_never_overwrites_input(tmp_path, capsys):
    src = _png(tmp_path / "x_blur_s0.5.png")
    before = src.read_bytes()
    # an input named exactly like the output it would produce from "x.png" in the same folder
    other = _png(tmp_path / "x.png")
    assert main(["attack", "apply", "blur", "-s", "0.5", str(other), str(src), "-o", str(tmp_path)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_apply_refuses_existing_outputs(tmp_path, capsys):
    src = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(src)
    out = tmp_path / "o"
    assert main(["attack", "apply", "blur", "-s", "0.5", str(src), "-o", str(out)]) == 0
    first = (out / "a_blur_s0.5.png").read_bytes()
    capsys.readouterr()
    assert main(["attack", "apply", "noise", "-s", "0.5", str(src), "-o", str(out)]) == 0  # another name
    (out / "a_noise_s0.5.png").write_bytes(b"keep")
    assert main(["attack", "apply", "noise", "-s", "0.5", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert (out / "a_noise_s0.5.png").read_bytes() == b"keep"
    assert main(["attack", "apply", "blur", "-s", "0.5", str(src), "-o", str(out), "--overwrite"]) == 0
    assert (out / "a_blur_s0.5.png").read_bytes() == first
