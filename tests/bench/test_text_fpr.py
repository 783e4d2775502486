"""FPR on unmarked LM text: ``--fpr-n`` of ``wmark bench text-robustness`` and bench/text_fpr_lm.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from wmark.cli import main
from wmark.stats import clopper_pearson
from wmark.bench.text_robustness import TextRobustnessConfig, fpr_record, run_text_robustness

FPR_KEYS = {"n", "k@1e-02", "fpr@1e-02", "fpr@1e-02_lower95", "fpr@1e-02_upper95",
            "k@1e-03", "fpr@1e-03", "fpr@1e-03_lower95", "fpr@1e-03_upper95", "min_p"}


def test_clopper_pearson() -> None:
    from scipy.stats import beta

    assert clopper_pearson(0, 40)[0] == 0.0
    assert clopper_pearson(0, 40)[1] == pytest.approx(1 - 0.025 ** (1 / 40), rel=1e-9)
    assert clopper_pearson(40, 40) == (pytest.approx(0.025 ** (1 / 40), rel=1e-9), 1.0)
    lo, hi = clopper_pearson(1, 40)
    assert lo == pytest.approx(beta.ppf(0.025, 1, 40)) and hi == pytest.approx(beta.ppf(0.975, 2, 39))
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)
    rec = fpr_record(np.array([0.5, 0.005, 0.0005, 0.2]))
    assert set(rec) == FPR_KEYS and rec["n"] == 4 and rec["k@1e-02"] == 2 and rec["k@1e-03"] == 1
    assert rec["fpr@1e-02"] == 0.5 and rec["min_p"] == 0.0005
    assert rec["fpr@1e-03_lower95"] < 0.25 < rec["fpr@1e-03_upper95"]


def test_fpr_n_changes_only_the_fpr_row(tmp_path) -> None:
    kw = dict(schemes=("kgw-lefthash",), lengths=(8,), rates=(0.0,), attacks=("delete",), n=2, progress=False)
    base = run_text_robustness(TextRobustnessConfig(out=str(tmp_path / "a"), **kw))
    more = run_text_robustness(TextRobustnessConfig(out=str(tmp_path / "b"), fpr_n=5, **kw))
    assert base.cells == more.cells
    assert base.config["fpr_n"] == 2 and more.config["fpr_n"] == 5
    assert base.fpr_detail["kgw-lefthash"]["8"]["n"] == 2 and more.fpr_detail["kgw-lefthash"]["8"]["n"] == 5
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    rec = res["fpr_detail"]["kgw-lefthash"]["8"]
    assert set(rec) == FPR_KEYS and rec["n"] == 5
    assert res["fpr"]["kgw-lefthash"]["8"] == rec["fpr@1e-03"]
    md = (tmp_path / "b" / "report.md").read_text()
    assert "| T | alpha | kgw-lefthash |" in md and "/5 = " in md and "Clopper-Pearson" in md


def test_fpr_n_bad_value_is_one_line_error(tmp_path, capsys) -> None:
    rc = main(["bench", "text-robustness", "--out", str(tmp_path / "o"), "--quick", "--fpr-n", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "--fpr-n must be >= 1" in err
    assert not (tmp_path / "o").exists()


def test_text_fpr_lm_script(tmp_path, bench_script, capsys) -> None:
    mod = bench_script("text_fpr_lm")
    out, cache = tmp_path / "fpr.json", tmp_path / "tokens.npz"
    args = ["--length", "12", "--batch", "2", "--schemes", "kgw-lefthash,gumbel,tournament",
            "--cache", str(cache), "--out", str(out)]
    assert mod.main(["--n", "3", "--other-keys", "2", *args]) == 0
    res = json.loads(out.read_text())
    assert res["config"]["n"] == 3 and set(res["schemes"]) == {"kgw-lefthash", "gumbel", "tournament"}
    assert res["cached_texts"] == 0 and "FPR@1e-3 [95% CP]" in res["table_md"]
    for name, rec in res["schemes"].items():
        assert FPR_KEYS <= set(rec) and rec["n"] == 3
        assert 0.0 <= rec["ks_stat"] <= 1.0 and 0.0 < rec["min_p"] <= 1.0
        assert rec["ks_on"] == ("continuous" if name == "gumbel" else "randomised (discrete null)")
        other = rec["other_keys"]
        assert FPR_KEYS <= set(other) and other["n"] == 6 and len(other["z_mean_per_key"]) == other["keys"] == 2
    # the cache holds the 2 batches generated (4 texts); batch b depends only on (seed, b), not on --n
    tokens = np.load(cache)["tokens"]
    assert tokens.shape == (4, 12)
    import wmark.lm

    fresh, _, cached = mod.generate_unmarked(wmark.lm.load(), 2, 12, 0, 2, None, log=lambda m: None)
    assert cached == 0 and np.array_equal(fresh, tokens[:2])
    assert mod.main(["--n", "2", *args]) == 2  # the result file exists: refused, one line
    assert "result file exists" in capsys.readouterr().err
    assert mod.main(["--n", "2", "--overwrite", *args]) == 0
    res2 = json.loads(out.read_text())
    assert res2["cached_texts"] == 2 and res2["schemes"]["gumbel"]["n"] == 2
    assert "other_keys" not in res2["schemes"]["gumbel"]


@pytest.mark.parametrize("args, message", [(["--n", "0"], "--n, --length and --batch must be >= 1"),
                                           (["--other-keys", "-1"], "--other-keys must be >= 0"),
                                           (["--schemes", "kgw-lefthash,nope"], "unknown text scheme 'nope'")])
def test_text_fpr_lm_bad_args(tmp_path, capsys, args, message, bench_script) -> None:
    assert bench_script("text_fpr_lm").main([*args, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and not (tmp_path / "x.json").exists()
