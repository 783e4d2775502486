"""Where the benchmarks write: a non-empty ``--out`` (or an existing result file) is refused unless
``--overwrite``, a file where a folder is needed is a one-line error, defaults go under ``runs/``, and the
committed ``bench/results/`` is written only with ``--update-results``; the progress bar helper."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from wmark.bench import Output, OutputError, prepare_out
from wmark.bench import outputs
from wmark.bench.report import progress
from wmark.cli import main

#: every script under bench/ that writes results, and the arguments that make it cheap
SCRIPTS = ("image_bench", "image_fpr", "text_stats", "text_detect", "text_processor", "text_fpr_lm",
           "origin_margin", "mark_spectrum", "kernel_kgw")


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


# -- the helper ---------------------------------------------------------------------------------------
def test_prepare_out_folder(tmp_path) -> None:
    assert prepare_out(tmp_path / "new") == tmp_path / "new" and not (tmp_path / "new").exists()  # creates nothing
    (tmp_path / "empty").mkdir()
    assert prepare_out(tmp_path / "empty") == tmp_path / "empty"
    full = tmp_path / "full"
    full.mkdir()
    (full / "results.json").write_text("{}")
    with pytest.raises(OutputError, match="not empty.*--overwrite"):
        prepare_out(full)
    assert prepare_out(full, overwrite=True) == full
    (tmp_path / "f").write_text("x")
    for overwrite in (False, True):  # a file is never an output folder
        with pytest.raises(OutputError, match="exists and is not a folder"):
            prepare_out(tmp_path / "f", overwrite)
        with pytest.raises(OutputError, match="is not a folder"):
            prepare_out(tmp_path / "f" / "sub", overwrite)
    assert issubclass(OutputError, ValueError)  # `wmark` prints it as one line, exit 2


def test_prepare_out_files(tmp_path) -> None:
    stem = tmp_path / "bench"
    assert prepare_out(stem, file=True, suffixes=(".json", ".md")) == stem
    (tmp_path / "bench.md").write_text("old")
    with pytest.raises(OutputError, match=r"bench\.md: result file exists.*--overwrite"):
        prepare_out(stem, file=True, suffixes=(".json", ".md"))
    assert prepare_out(stem, True, file=True, suffixes=(".json", ".md")) == stem
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(OutputError, match="result file exists"):
        prepare_out(tmp_path / "r.json", file=True)
    assert prepare_out(tmp_path / "r.json", True, file=True) == tmp_path / "r.json"
    (tmp_path / "d.json").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        prepare_out(tmp_path / "d.json", True, file=True)


def test_output_options(tmp_path, monkeypatch) -> None:
    spec = Output("runs/thing.json", results="thing.json", file=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    spec.add_arguments(ap)
    assert spec.path(ap.parse_args([])) == (Path("runs/thing.json"), False)
    assert spec.path(ap.parse_args(["--out", "x.json", "--overwrite"])) == (Path("x.json"), True)
    monkeypatch.setattr(outputs, "RESULTS_DIR", tmp_path)
    assert spec.path(ap.parse_args(["--update-results"])) == (tmp_path / "thing.json", True)
    with pytest.raises(OutputError, match="not both"):
        spec.path(ap.parse_args(["--update-results", "--out", "x.json"]))
    with pytest.raises(OutputError, match="--quick"):
        spec.path(ap.parse_args(["--update-results", "--quick"]))
    monkeypatch.setattr(outputs, "RESULTS_DIR", tmp_path / "missing")
    with pytest.raises(OutputError, match="no committed results folder"):
        spec.path(ap.parse_args(["--update-results"]))
    assert outputs.RESULTS_DIR != Path("bench/results")
    assert Output(None).prepare(argparse.Namespace(out=None, overwrite=False)) is None


# -- wmark bench ... ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["robustness", "text-robustness"])
def test_cli_refuses_non_empty_out(tmp_path, capsys, command) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"old": 1}')
    rc = main(["bench", command, "--quick", "--no-progress", "--out", str(out)])
    assert rc == 2
    _one_line_error(capsys, "wmark: error:", str(out), "not empty", "--overwrite")
    assert (out / "results.json").read_text() == '{"old": 1}' and len(list(out.iterdir())) == 1
    (tmp_path / "file").write_text("x")
    for extra in ([], ["--overwrite"]):
        rc = main(["bench", command, "--quick", "--no-progress", "--out", str(tmp_path / "file"), *extra])
        assert rc == 2
        _one_line_error(capsys, "wmark: error:", "not a folder")


@pytest.mark.parametrize("command", ["robustness", "text-robustness"])
def test_cli_update_results_conflicts(tmp_path, capsys, command) -> None:
    rc = main(["bench", command, "--update-results", "--out", str(tmp_path / "o")])
    assert rc == 2
    _one_line_error(capsys, "--out or --update-results")
    rc = main(["bench", command, "--update-results", "--quick"])
    assert rc == 2
    _one_line_error(capsys, "--quick")


def test_cli_defaults_under_runs() -> None:
    from wmark.cli import build_parser

    for command in ("robustness", "text-robustness"):
        args = build_parser().parse_args(["bench", command])
        from wmark.cli.bench import ROBUSTNESS_OUT, TEXT_ROBUSTNESS_OUT

        spec = ROBUSTNESS_OUT if command == "robustness" else TEXT_ROBUSTNESS_OUT
        path, overwrite = spec.path(args)
        assert path == Path("runs") / command and not overwrite


def test_cli_overwrite_replaces(tmp_path) -> None:
    """--overwrite writes into a non-empty folder: the run's files replace the old ones, others stay."""
    out = tmp_path / "text"
    out.mkdir()
    (out / "results.json").write_text('{"old": 1}')
    (out / "notes.txt").write_text("mine")
    rc = main(["bench", "text-robustness", "--out", str(out), "--overwrite", "--no-progress", "--schemes",
               "kgw-lefthash", "--n", "1", "--lengths", "8", "--rates", "0", "--attacks", "delete"])
    assert rc == 0
    assert json.loads((out / "results.json").read_text())["benchmark"] == "text-robustness"
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# -- bench/*.py ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_defaults_under_runs(bench_script, name) -> None:
    spec = bench_script(name).OUTPUT
    if name == "kernel_kgw":
        assert spec.default is None  # prints its table; writes only with --out
    else:
        assert spec.default.startswith("runs/") and spec.results and "bench/results" not in spec.default


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_refuses_existing_result(tmp_path, capsys, bench_script, name) -> None:
    mod = bench_script(name)
    target = tmp_path / ("r.md" if name == "image_bench" else "r.json")  # image_bench: --out STEM -> STEM.json, .md
    target.write_text("old")
    out = str(tmp_path / "r") if name == "image_bench" else str(target)
    assert mod.main(["--out", out]) == 2
    _one_line_error(capsys, f"{name}: error:", str(target), "exists", "--overwrite")
    assert target.read_text() == "old"
    folder = tmp_path / ("d.json" if name == "image_bench" else "d")
    folder.mkdir()
    assert mod.main(["--out", str(tmp_path / "d") if name == "image_bench" else str(folder), "--overwrite"]) == 2
    _one_line_error(capsys, f"{name}: error:", "is a folder")


def test_update_results_writes_the_committed_file(tmp_path, monkeypatch, bench_script) -> None:
    """--update-results replaces bench/results/<name>.json (here a stand-in folder) without --overwrite."""
    monkeypatch.setattr(outputs, "RESULTS_DIR", tmp_path)
    (tmp_path / "mark_spectrum.json").write_text("old")
    mod = bench_script("mark_spectrum")
    assert mod.main(["--n", "2", "--update-results"]) == 0
    assert json.loads((tmp_path / "mark_spectrum.json").read_text())["n_messages"] == 2
    assert mod.main(["--n", "2", "--out", str(tmp_path / "x.json")]) == 0
    assert mod.main(["--n", "2", "--out", str(tmp_path / "x.json")]) == 2  # a second run refuses
    assert mod.main(["--n", "3", "--out", str(tmp_path / "x.json"), "--overwrite"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["n_messages"] == 3


# -- progress -----------------------------------------------------------------------------------------
def test_progress_bar(capsys, monkeypatch) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with progress(4, "demo-bar", True, unit="img") as bar:
        bar.update(4)
    err = capsys.readouterr().err
    assert "demo-bar" in err and "4/4" in err and "img" in err
    with progress(4, "quiet-bar", False) as bar:
        bar.update(4)
        bar.set_postfix_str("x")
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("TQDM_DISABLE", "1")  # the environment can silence every bar
    with progress(4, "env-bar", True) as bar:
        bar.update(4)
    assert capsys.readouterr().err == ""


def test_progress_processor_keeps_samples(monkeypatch) -> None:
    """The ticking processor leaves the scores alone: the same tokens, one tick per generated token."""
    import torch

    import wmark.lm
    from wmark.bench.report import progress_processor
    from wmark.lm.sampling import generate

    lm = wmark.lm.load()
    prompts = torch.tensor([lm.encode("ROMEO:\nWhat light")[:4]] * 2, dtype=torch.long)
    plain = generate(lm, prompts, 6, generator=torch.Generator().manual_seed(1))
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with progress(6, "gen", True) as bar:
        ticked = generate(lm, prompts, 6, logits_processor=[progress_processor(bar)],
                          generator=torch.Generator().manual_seed(1))
        assert bar.n == 6
        tick = progress_processor(bar, 2 / 6)  # 2 texts over 6 token steps: whole units only
        generate(lm, prompts, 6, logits_processor=[tick], generator=torch.Generator().manual_seed(1))
        assert tick.count == 2 and bar.n == 8
    assert torch.equal(plain, ticked)
