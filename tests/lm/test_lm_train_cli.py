"""``wmark train lm``: argument wiring (fast) and a short end-to-end run with resume (slow)."""
from __future__ import annotations

import json

import pytest


def test_train_lm_parser_registered():
    from wmark.cli import build_parser

    args = build_parser().parse_args(["train", "lm", "--out", "x", "--seed", "3", "--steps", "7", "--minutes", "2"])
    assert args.what == "lm" and args.seed == 3 and args.steps == 7 and args.minutes == 2.0 and callable(args.func)


@pytest.mark.slow
def test_train_lm_tiny_run_and_resume(tmp_path, shared_data):
    from wmark.cli import main
    from wmark.lm.bundle import load_dir

    out = tmp_path / "m"
    argv = ["train", "lm", "--out", str(out), "--seed", "0", "--steps", "4", "--batch-size", "2", "--seq-len", "32",
            "--d-model", "32", "--n-layer", "1", "--n-head", "2", "--data", str(shared_data / "text")]
    assert main(argv) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["steps_done"] == 4 and card["val_perplexity"] > 1
    lm = load_dir(out, device="cpu")
    assert lm.vocab_size == 4096
    # same seed -> identical weights (tokenizer and model)
    out2 = tmp_path / "m2"
    assert main([*argv[:3], str(out2), *argv[4:]]) == 0
    assert (out / "model.bin").read_bytes() == (out2 / "model.bin").read_bytes()


@pytest.mark.slow
def test_train_lm_resumes_after_a_crash(tmp_path, shared_data, monkeypatch, capsys):
    import wmark.lm.train as T

    kw = dict(seed=1, steps=5, batch_size=2, seq_len=32, d_model=32, n_layer=1, n_head=2,
              data=shared_data / "text", ckpt_every=2)
    T.train_lm(tmp_path / "ref", **kw)
    orig, calls = T._loss, {"n": 0}

    def crash_on_4th(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # killed after the step-2 checkpoint
        return orig(*a, **k)

    monkeypatch.setattr(T, "_loss", crash_on_4th)
    with pytest.raises(KeyboardInterrupt):
        T.train_lm(tmp_path / "run", **kw)
    assert (tmp_path / "run" / ".ckpt" / "state.pt").is_file()
    monkeypatch.setattr(T, "_loss", orig)
    capsys.readouterr()
    T.train_lm(tmp_path / "run", **kw)  # resumes from step 2
    assert "resuming from step 2" in capsys.readouterr().out
    assert not (tmp_path / "run" / ".ckpt").exists()
    assert (tmp_path / "run" / "model.bin").read_bytes() == (tmp_path / "ref" / "model.bin").read_bytes()
