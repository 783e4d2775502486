"""bench/origin_margin.py: the blind read's origin margin, chosen on training photos (never Kodak)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


def test_rules_scored_on_training_photos(tmp_path, bench_script, shared_data, capsys) -> None:
    mod = bench_script("origin_margin")
    out = tmp_path / "m.json"
    assert mod.main(["--data", str(shared_data / "train"), "--n", "2", "--out", str(out), "--no-progress"]) == 0
    assert "origin_margin" not in capsys.readouterr().err  # --no-progress: no bar
    res = json.loads(out.read_text())
    assert res["n_images"] == 2 and len(res["results"]) == len(mod.ATTACKS)
    for rules in res["results"].values():
        assert set(rules) == {"energy", "logcosh", "oracle"} | {f"margin={m:g}" for m in mod.MARGINS}
        assert all(0.0 <= v <= 1.0 for v in rules.values())
        # the oracle (best agreement with the carried codeword over all shifts) bounds every blind rule
        assert all(v <= rules["oracle"] + 1e-12 for v in rules.values())
        assert rules["margin=0"] == pytest.approx(rules["logcosh"])  # no margin: the origin only where it is best


@pytest.mark.parametrize("args,msg", [(["--n", "0"], "--n must be >= 1"),
                                      (["--data", "../shared/data/kodak"], "Kodak is for evaluation only")])
def test_bad_arguments(tmp_path, bench_script, args, msg) -> None:
    with pytest.raises(SystemExit, match=msg):
        bench_script("origin_margin").main(args + ["--out", str(tmp_path / "m.json")])
