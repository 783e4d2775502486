"""bench/mark_spectrum.py: the shipped mark's energy per frequency band and what a blur keeps."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("mark_spectrum", REPO / "bench" / "mark_spectrum.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_spectrum_fractions(tmp_path) -> None:
    mod = _module()
    assert mod.main(["--n", "16", "--out", str(tmp_path / "s.json")]) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    assert math.isclose(sum(res["bands"].values()), 1.0, abs_tol=1e-9)  # the bands cover every frequency
    kept = [res["blur_kept"][f"{s:g}"] for s in mod.SIGMAS]
    assert all(0 < k < 1 for k in kept) and kept == sorted(kept, reverse=True)
    assert 0.0 < res["mean_frequency"] < 0.5


def test_bad_n_is_an_error(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--n must be >= 1"):
        _module().main(["--n", "0", "--out", str(tmp_path / "s.json")])
