"""``wmark bench robustness | text-robustness``: schema, sanity of the numbers, statistics, bad input."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from wmark.cli import main
from wmark.bench.robustness import (ALPHAS, RobustnessConfig, alpha_key, binomial_pvalue, run_robustness,
                              synthetic_images, tpr_from_matches)

PNG = b"\x89PNG\r\n\x1a\n"
CELL_KEYS = {"method", "attack", "strength", "param", "n", "bit_acc", "tpr", "psnr", "ssim"}


def _write_images(folder: Path, n: int = 3, size: int = 256) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(synthetic_images(n, size, seed=1)):
        Image.fromarray(a).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, dict]:
    """One --quick sweep on 2 synthetic 256x256 PNGs (--n 1: the first only; wmark + dwtDct if installed)."""
    root = tmp_path_factory.mktemp("rob")
    images = _write_images(root / "images", n=2)
    out = root / "out"
    rc = main(["bench", "robustness", str(images), "--quick", "--out", str(out), "--no-progress",
               "--attacks", "jpeg,noise,pgd", "--strengths", "0,1", "--methods", "wmark,dwtDct", "--n", "1"])
    assert rc == 0
    return out, json.loads((out / "results.json").read_text())


def test_quick_schema(quick_run) -> None:
    out, res = quick_run
    assert res["benchmark"] == "robustness" and res["schema"] == 1
    assert {"config", "methods", "skipped", "cells", "breaks", "elapsed_s", "notes"} <= set(res)
    assert res["config"]["attacks"] == ["jpeg", "noise", "pgd"]
    assert res["config"]["strengths"] == [0.0, 1.0]
    assert "wmark" in res["methods"] and res["methods"]["wmark"]["n_images"] == 1
    assert set(res["methods"]) | set(res["skipped"]) == {"wmark", "wmark-payload", "wmark-known", "dwtDct"}
    assert res["methods"]["wmark-known"]["variant_of"] == "wmark"
    assert res["methods"]["wmark-payload"]["n_bits"] == 48 and res["methods"]["wmark"]["n_bits"] == 128
    for c in res["cells"]:
        assert CELL_KEYS <= set(c)
        assert 0.0 <= c["bit_acc"] <= 1.0 and c["n"] >= 1
        assert set(c["tpr"]) == {alpha_key(a) for a in ALPHAS}
        assert all(0.0 <= v <= 1.0 for v in c["tpr"].values())
        assert c["tpr"][alpha_key(1e-6)] <= c["tpr"][alpha_key(1e-3)]
    # pgd is white-box against wmark only; every method has every other (attack, strength)
    assert {c["method"] for c in res["cells"] if c["attack"] == "pgd"} == {"wmark", "wmark-payload", "wmark-known"}
    for m in res["methods"]:
        got = {(c["attack"], c["strength"]) for c in res["cells"] if c["method"] == m}
        want = {("none", 0.0)} | {(a, s) for a in ("jpeg", "noise") for s in (0.0, 1.0)}
        assert want <= got
    assert set(res["breaks"]["wmark"]) == {"jpeg", "noise", "pgd"}


def test_clean_is_most_accurate(quick_run) -> None:
    _, res = quick_run
    for m in res["methods"]:
        cells = [c for c in res["cells"] if c["method"] == m]
        clean = next(c for c in cells if c["attack"] == "none")
        assert clean["psnr"] == 100.0 and clean["ssim"] == 1.0
        # identity-at-zero attacks at strength 0 are the clean image
        for c in cells:
            if c["strength"] == 0.0 and c["attack"] in ("noise", "pgd"):
                assert c["bit_acc"] == clean["bit_acc"]
        assert clean["bit_acc"] >= max(c["bit_acc"] for c in cells) - 0.02
        strong = [c["bit_acc"] for c in cells if c["strength"] == 1.0]
        assert clean["bit_acc"] > np.mean(strong) + 0.1


def test_quick_outputs(quick_run) -> None:
    out, res = quick_run
    md = (out / "report.md").read_text()
    assert "## Where wmark breaks" in md and "## Clean (no attack)" in md
    for a in res["config"]["attacks"]:
        assert f"### {a}" in md
    for name in ("bit_accuracy.png", "tpr_1e-6.png"):
        assert (out / name).read_bytes()[:8] == PNG


def test_known_payload_readout_is_never_weaker(quick_run) -> None:
    """wmark-known reads the same attacked images with the payload given: its p-value tests the blind
    shift too (x2), so it detects wherever the blind read does at clean strength."""
    _, res = quick_run
    by = {(c["method"], c["attack"], c["strength"]): c for c in res["cells"]}
    clean, known = by["wmark", "none", 0.0], by["wmark-known", "none", 0.0]
    assert known["tpr"][alpha_key(1e-6)] >= clean["tpr"][alpha_key(1e-6)]
    assert known["bit_acc"] == pytest.approx(clean["bit_acc"], abs=0.02)
    # the 48-bit message it returns is exact wherever the blind read detects (RS corrects raw bit errors)
    message = by["wmark-payload", "none", 0.0]
    assert message["tpr"] == clean["tpr"]
    if clean["tpr"][alpha_key(1e-3)] == 1.0:
        assert message["bit_acc"] == 1.0


def test_shortfalls_are_paired_by_image() -> None:
    """The target check compares wmark and a baseline on the images both ran, not on different subsets."""
    from wmark.bench.robustness import Sample, shortfalls

    def s(m, i, acc):
        return Sample(m, i, "blur", 0.5, acc, 0.5, 30.0, 0.9)

    # wmark: 1.0 on image 0, 0.6 on image 1 (mean 0.8); rivaGan ran on image 0 only (0.9)
    samples = [s("wmark", 0, 1.0), s("wmark", 1, 0.6), s("rivaGan", 0, 0.9), s("dwtDct", 0, 0.9), s("dwtDct", 1, 0.9),
               Sample("wmark", 0, "blur", 0.75, 0.1, 1.0, 1.0, 0.1), Sample("dwtDct", 0, "blur", 0.75, 0.9, 0, 1, 0.1)]
    got = shortfalls(samples)
    assert [(d["baseline"], d["n_images"]) for d in got] == [("dwtDct", 2)]  # 0.8 < 0.9; strength 0.75 ignored
    assert got[0]["bit_acc"] == pytest.approx(0.8) and got[0]["baseline_bit_acc"] == pytest.approx(0.9)


def test_binomial_pvalue_closed_form() -> None:
    assert binomial_pvalue(32) == 2.0 ** -32
    assert binomial_pvalue(30) == pytest.approx((1 + 32 + 496) / 2 ** 32, rel=1e-12)
    assert binomial_pvalue(0) == 1.0 and binomial_pvalue(16) == pytest.approx(0.5 + math.comb(32, 16) / 2 ** 33)
    from scipy.stats import binom

    for k in range(33):
        assert binomial_pvalue(k) == pytest.approx(binom.sf(k - 1, 32, 0.5), rel=1e-9, abs=1e-300)
    # 30 of 32: p = 1.2e-7 < 1e-6; 29: p = 1.3e-6 > 1e-6; 26: p = 2.7e-4 < 1e-3; 25: p = 1.05e-3
    assert tpr_from_matches([32, 30, 29, 20], 1e-6) == 0.5
    assert tpr_from_matches([26, 25, 32, 0], 1e-3) == 0.5


def test_empty_folder_is_one_line_error(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    rc = main(["bench", "robustness", str(tmp_path / "empty"), "--quick", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "no images found" in err and "empty" in err
    with pytest.raises(ValueError, match="not a folder"):
        run_robustness(RobustnessConfig(out=str(tmp_path / "o"), images=str(tmp_path / "missing"), quick=True))


@pytest.mark.parametrize("args, message", [
    (["--attacks", "jpeg,nope"], "unknown image attack 'nope'"),
    (["--methods", "wmark,magic"], "unknown method 'magic'"),
    (["--strengths", "0,1.5"], "strength must be in [0, 1]"),
    (["--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, message) -> None:
    images = _write_images(tmp_path / "images", n=1)
    rc = main(["bench", "robustness", str(images), "--quick", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and message in err
    assert not (tmp_path / "o").exists()


def test_jobs_do_not_change_results(tmp_path) -> None:
    """Worker processes only reorder the work: every cell equals the serial run's."""
    images = _write_images(tmp_path / "images", n=2, size=128)
    kw = dict(images=str(images), quick=True, attacks=("jpeg", "crop_random"), strengths=(0.0, 0.5),
              methods=("wmark",), n=2, progress=False)
    serial = run_robustness(RobustnessConfig(out=str(tmp_path / "s"), **kw))
    pooled = run_robustness(RobustnessConfig(out=str(tmp_path / "p"), jobs=2, **kw))
    assert serial.cells == pooled.cells and pooled.config["jobs"] == 2


def test_text_bad_scheme_is_an_error(tmp_path, capsys) -> None:
    rc = main(["bench", "text-robustness", "--out", str(tmp_path / "o"), "--schemes", "kgw-lefthash,nope"])
    assert rc == 2 and "unknown text scheme 'nope'" in capsys.readouterr().err


def test_kodak_default_folder(shared_data, tmp_path) -> None:
    if not (shared_data / "kodak").is_dir():
        pytest.skip(f"Kodak not found at {shared_data / 'kodak'}")
    res = run_robustness(RobustnessConfig(out=str(tmp_path), quick=True, n=1, attacks=("jpeg",), strengths=(0.5,),
                                          methods=("wmark",), progress=False))
    assert res.config["images"].endswith("kodak") and res.config["image_names"] == ["kodim01.png"]
    assert {(c.attack, c.strength) for c in res.cells} == {("none", 0.0), ("jpeg", 0.5)}


def test_text_robustness_tiny(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = tmp_path / "text"
    rc = main(["bench", "text-robustness", "--out", str(out), "--schemes", "kgw-lefthash",
               "--n", "2", "--lengths", "16", "--rates", "0,0.5", "--attacks", "delete,lm-substitute"])
    assert rc == 0
    err = capsys.readouterr().err  # the progress bar (on by default): 2 unmarked + 2 marked + 2 attacked texts
    assert "text-robustness" in err and "6/6" in err and "<" in err  # elapsed<remaining
    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "text-robustness" and res["config"]["attacks"] == ["delete", "lm_substitute"]
    cells = {(c["attack"], c["rate"]): c for c in res["cells"]}
    assert set(cells) == {(a, r) for a in ("delete", "lm_substitute") for r in (0.0, 0.5)}
    assert all(0.0 <= v <= 1.0 for c in cells.values() for v in c["tpr"].values())
    assert cells["delete", 0.0]["mean_tokens"] == cells["lm_substitute", 0.5]["mean_tokens"] == 16
    assert cells["delete", 0.5]["mean_tokens"] < 16
    assert 0.0 <= res["fpr"]["kgw-lefthash"]["16"] <= 1.0
    assert "## delete, T = 16" in (out / "report.md").read_text()
    assert (out / "text_robustness.png").read_bytes()[:8] == PNG


def test_weights_option_loads_a_trained_file(tmp_path, capsys) -> None:
    """--weights runs wmark with a weights file (here a copy of the shipped one: identical cells) and
    records its path and sha256; a missing file is a one-line error and writes nothing."""
    import hashlib

    from wmark.image.model import weights_blob

    images = _write_images(tmp_path / "images", n=1, size=128)
    blob = weights_blob("default")
    (tmp_path / "w.pt").write_bytes(blob)
    kw = dict(images=str(images), quick=True, attacks=("jpeg",), strengths=(0.5,), methods=("wmark",), n=1,
              progress=False)
    shipped = run_robustness(RobustnessConfig(out=str(tmp_path / "s"), **kw))
    copy = run_robustness(RobustnessConfig(out=str(tmp_path / "c"), weights=str(tmp_path / "w.pt"), **kw))
    assert copy.cells == shipped.cells
    assert copy.config["weights"] == {"source": str(tmp_path / "w.pt"), "sha256": hashlib.sha256(blob).hexdigest()}
    assert shipped.config["weights"]["source"] == "shipped:default"
    assert "wmark image weights: " in (tmp_path / "c" / "report.md").read_text()
    rc = main(["bench", "robustness", str(images), "--quick", "--out", str(tmp_path / "o"),
               "--weights", str(tmp_path / "nope.pt")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "no such image weights file" in err
    assert not (tmp_path / "o").exists()
