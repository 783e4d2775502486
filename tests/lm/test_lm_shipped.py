"""The shipped ``tiny`` model: loads offline, sha256-verified, sensible perplexity, fine-tunes."""
from __future__ import annotations

import importlib.resources as ir

import pytest
import torch

import wmark.lm
from wmark.lm.sampling import perplexity

# card.json val_perplexity (all 35.9k held-out tokens) measured 133.0 when trained; the fast test
# rescores the first 1500 held-out tokens of each text (measured 102 / 123 / 185) against a looser bound
VAL_PPL_BOUND = 150.0
SUBSET_PPL_BOUND = 220.0


@pytest.fixture(scope="module")
def lm():
    return wmark.lm.load("tiny", device="cpu")


def test_weights_are_small_and_listed():
    with ir.as_file(ir.files("wmark.lm").joinpath("weights")) as d:
        names = {p.name for p in d.iterdir()}
        assert {"model.bin", "tokenizer.json", "card.json", "README.md", "SHA256SUMS"} <= names
        assert (d / "model.bin").stat().st_size <= 8 * 1024 * 1024
    assert wmark.lm.available() == ["tiny"]
    with pytest.raises(ValueError, match="unknown model"):
        wmark.lm.load("huge")


def test_shipped_model_loads(lm):
    assert lm.vocab_size == 4096 == lm.tokenizer.vocab_size
    assert lm.device.type == "cpu" and not lm.model.training
    assert lm.eos_id is not None
    card = lm.card
    assert card["val_perplexity"] < VAL_PPL_BOUND and card["parameters"] == lm.model.num_parameters()
    assert card["training_command"].startswith("wmark train lm ")


def test_tokenizer_roundtrip_real_text(lm, shared_data):
    for name in ("tinyshakespeare.txt", "pg1342.txt", "pg84.txt"):
        text = (shared_data / "text" / name).read_text(encoding="utf-8")[:20_000]
        ids = lm.tokenizer.encode(text)
        assert lm.tokenizer.decode(ids) == text
        assert len(ids) < len(text) / 2.5  # BPE actually compresses English


def test_validation_perplexity(lm, shared_data):
    """Held-out text (last 5% of each corpus file): measured ppl stays under the bound."""
    from wmark.lm.data import load_corpus

    c = load_corpus(shared_data / "text")
    ppls = {}
    for name, text in c.val.items():
        ids = torch.tensor(lm.encode(text)[:1500])
        ppls[name] = perplexity(lm, ids).ppl
    assert all(1.0 < p < SUBSET_PPL_BOUND for p in ppls.values()), ppls
    assert sum(ppls.values()) / 3 < VAL_PPL_BOUND, ppls
    # and far better than chance (vocab 4096) or shuffled text
    shuffled = torch.tensor(lm.encode(c.val["pg84.txt"])[:1500])
    shuffled = shuffled[torch.randperm(shuffled.numel(), generator=torch.Generator().manual_seed(0))]
    assert perplexity(lm, shuffled).ppl > 3 * ppls["pg84.txt"]


def test_generate_text(lm):
    a = lm.generate_text("ROMEO:\n", max_new_tokens=20, temperature=0.8, seed=0)
    b = lm.generate_text("ROMEO:\n", max_new_tokens=20, temperature=0.8, seed=0)
    assert a == b and isinstance(a, str) and len(a) > 0
    assert isinstance(lm.generate_text("", max_new_tokens=5, seed=1), str)
    with pytest.raises(ValueError, match="prompt"):
        lm.generate_text(5)  # type: ignore[arg-type]


def test_finetune_shipped_does_not_mutate(lm):
    from wmark.lm.train import finetune_run

    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    text = "Elizabeth walked to Netherfield in the rain, and Mr. Darcy said nothing at all. " * 30
    ids = torch.tensor(lm.encode(text))
    p0 = perplexity(lm, ids).ppl
    res = finetune_run(lm, ids, steps=8, lr=1e-3, batch_size=4, seq_len=48, generator=torch.Generator().manual_seed(0))
    assert perplexity(res.lm, ids).ppl < p0
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    # a second load is independent of the fine-tuned copy
    assert all(torch.equal(before[k], v) for k, v in wmark.lm.load("tiny", device="cpu").model.state_dict().items())


def test_lm_is_lazy():
    import subprocess
    import sys

    code = "import sys, wmark.lm; print('torch' in sys.modules, 'tokenizers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cli_lm_info_and_generate(capsys):
    from wmark.cli import main

    assert main(["lm", "generate", "To be", "--max-new-tokens", "5", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("To be")
    assert main(["lm", "info"]) == 0
    assert "val_perplexity" in capsys.readouterr().out


def test_load_tokenizer_is_the_shipped_models():
    from wmark.lm import load, load_tokenizer

    t = load_tokenizer()
    assert t.to_str() == load(device="cpu").tokenizer.to_str()
    with pytest.raises(ValueError, match="unknown model"):
        load_tokenizer("nope")
