"""bench/mark_spectrum.py: the shipped mark's energy per frequency band and what a blur keeps."""
from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("torch")


def test_spectrum_fractions(tmp_path, bench_script) -> None:
    mod = bench_script("mark_spectrum")
    assert mod.main(["--n", "16", "--out", str(tmp_path / "s.json")]) == 0
    res = json.loads((tmp_path / "s.json").read_text())
    assert math.isclose(sum(res["bands"].values()), 1.0, abs_tol=1e-9)  # the bands cover every frequency
    kept = [res["blur_kept"][f"{s:g}"] for s in mod.SIGMAS]
    assert all(0 < k < 1 for k in kept) and kept == sorted(kept, reverse=True)
    assert 0.0 < res["mean_frequency"] < 0.5


def test_bad_n_is_an_error(tmp_path, bench_script) -> None:
    with pytest.raises(SystemExit, match="--n must be >= 1"):
        bench_script("mark_spectrum").main(["--n", "0", "--out", str(tmp_path / "s.json")])
