"""wmark.lm: tokenizer, model, KV cache, generation, scoring, weight files (fast, small random models)."""
from __future__ import annotations

import shutil

import pytest
import torch

from wmark.assets import WeightsIntegrityError
from wmark.lm.bundle import LanguageModel, load_dir, read_tensors, save_dir, write_tensors
from wmark.lm.data import load_corpus, split_text, strip_gutenberg
from wmark.lm.sampling import generate, perplexity, token_logprobs
from wmark.lm.model import GPT, GPTConfig
from wmark.lm.tokenizer import EOS_TOKEN, Tokenizer, train_tokenizer

SMALL = GPTConfig(vocab_size=61, context=16, d_model=32, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def small() -> GPT:
    torch.manual_seed(0)
    return GPT(SMALL).eval()


@pytest.fixture(scope="module")
def tiny_tok() -> Tokenizer:
    text = "the quick brown fox jumps over the lazy dog. " * 20 + "Ünïcödé ✓ 日本語\n"
    return train_tokenizer([text], vocab_size=300)


# -- data / tokenizer -------------------------------------------------------------------------------
def test_strip_gutenberg_and_split():
    raw = "\ufeffheader\r\n*** START OF THE BOOK ***\r\nbody line\r\nmore\r\n*** END OF THE BOOK ***\r\nlicence\r\n"
    assert strip_gutenberg(raw) == "body line\nmore\n"
    assert strip_gutenberg("no markers\n") == "no markers\n"
    with pytest.raises(ValueError, match="markers"):
        strip_gutenberg("*** END OF x\n*** START OF y\n")
    tr, va = split_text("a\n" * 100, 0.05)
    assert tr + va == "a\n" * 100 and 0 < len(va) < 20
    with pytest.raises(ValueError, match="val_fraction"):
        split_text("abc", 1.5)


def test_corpus_is_stripped(shared_data):
    c = load_corpus(shared_data / "text")
    for name in ("pg1342.txt", "pg84.txt"):
        whole = c.train[name] + c.val[name]
        assert "Project Gutenberg" not in whole[:2000] and "*** START OF" not in whole
        assert "*** END OF" not in whole and "PROJECT GUTENBERG LICENSE" not in whole.upper()
    assert c.train["tinyshakespeare.txt"].startswith("First Citizen:")


def test_tokenizer_roundtrip_train_and_errors(tiny_tok, tmp_path):
    s = "the lazy fox, Ünïcödé ✓ 日本語 and bytes never seen: 🦊\t\n"
    ids = tiny_tok.encode(s)
    assert all(isinstance(i, int) for i in ids) and tiny_tok.decode(ids) == s
    assert tiny_tok.decode(torch.tensor(ids)) == s
    assert 257 < tiny_tok.vocab_size <= 300 and tiny_tok.eos_id is not None
    assert tiny_tok.decode([tiny_tok.eos_id]) == EOS_TOKEN
    tiny_tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert again.encode(s) == ids
    with pytest.raises(ValueError, match="str"):
        tiny_tok.encode(123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="out of range"):
        tiny_tok.decode([10_000])
    with pytest.raises(ValueError, match="int"):
        tiny_tok.decode(["a"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        tiny_tok.decode("abc")  # type: ignore[arg-type]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer"):
        Tokenizer.from_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        Tokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=10)


def test_tokenizer_training_is_deterministic():
    texts = ["It is a truth universally acknowledged, that a single man " * 30]
    assert train_tokenizer(texts, 400).to_str() == train_tokenizer(texts, 400).to_str()


# -- model ------------------------------------------------------------------------------------------
def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError, match="n_layer"):
        GPTConfig(n_layer=0)
    assert GPTConfig.from_dict(SMALL.to_dict()) == SMALL


def test_forward_shapes_and_errors(small):
    ids = torch.randint(0, SMALL.vocab_size, (3, 10))
    out = small(ids)
    assert out.shape == (3, 10, SMALL.vocab_size) and out.dtype == torch.float32
    with pytest.raises(ValueError, match="context"):
        small(torch.zeros(1, SMALL.context + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="LongTensor"):
        small(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="LongTensor"):
        small(torch.zeros(4, dtype=torch.long))


def test_kv_cache_matches_full_forward(small):
    torch.manual_seed(1)
    ids = torch.randint(0, SMALL.vocab_size, (2, SMALL.context))
    full = small(ids)
    logits, cache = small.forward_cached(ids[:, :5])  # prefill
    pieces = [logits]
    t = 5
    for step in (1, 3, 1, 1, 2):  # single tokens and multi-token blocks
        logits, cache = small.forward_cached(ids[:, t : t + step], cache)
        pieces.append(logits)
        t += step
    while t < SMALL.context:
        logits, cache = small.forward_cached(ids[:, t : t + 1], cache)
        pieces.append(logits)
        t += 1
    inc = torch.cat(pieces, dim=1)
    assert torch.allclose(inc, full, atol=1e-5, rtol=1e-4)
    assert cache[0][0].shape == (2, SMALL.n_head, SMALL.context, SMALL.d_model // SMALL.n_head)
    with pytest.raises(ValueError, match="context"):
        small.forward_cached(ids[:, :1], cache)


def test_causal_masking(small):
    torch.manual_seed(2)
    a = torch.randint(0, SMALL.vocab_size, (1, 12))
    b = a.clone()
    b[:, 6:] = torch.randint(0, SMALL.vocab_size, (1, 6))
    la, lb = small(a), small(b)
    assert torch.allclose(la[:, :6], lb[:, :6], atol=1e-6)
    assert not torch.allclose(la[:, 6:], lb[:, 6:])


# -- generation -------------------------------------------------------------------------------------
def test_generate_forced_token_processor(small):
    seen: list[tuple[int, int]] = []

    def force7(input_ids, scores):
        seen.append(tuple(input_ids.shape))
        out = torch.full_like(scores, float("-inf"))
        out[:, 7] = 0.0  # one-hot logits
        return out

    prompt = torch.randint(0, SMALL.vocab_size, (2, 4))
    g = torch.Generator().manual_seed(0)
    out = generate(small, prompt, 6, temperature=1.0, logits_processor=force7, generator=g)
    assert out.shape == (2, 10) and torch.equal(out[:, :4], prompt)
    assert (out[:, 4:] == 7).all()
    assert seen == [(2, 4 + i) for i in range(6)]  # processors see everything so far
    # one-hot -inf logits also survive top_k, low temperature and a list of processors
    out = generate(small, prompt, 3, temperature=0.3, top_k=5, logits_processor=[lambda i, s: s, force7], generator=g)
    assert (out[:, 4:] == 7).all()
    out = generate(small, prompt, 3, temperature=0, logits_processor=force7)
    assert (out[:, 4:] == 7).all()


def test_generate_all_inf_is_an_error(small):
    with pytest.raises(ValueError, match="finite"):
        generate(small, torch.zeros(1, 2, dtype=torch.long), 2,
                 logits_processor=lambda i, s: torch.full_like(s, float("-inf")))


def test_greedy_is_deterministic_and_matches_full_forward(small):
    prompt = torch.randint(0, SMALL.vocab_size, (2, 3), generator=torch.Generator().manual_seed(3))
    a = generate(small, prompt, 10, temperature=0)
    b = generate(small, prompt, 10, temperature=0)
    assert torch.equal(a, b)
    seq = prompt
    for _ in range(10):  # reference: argmax of a full (cache-free) forward each step
        seq = torch.cat([seq, small(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(a, seq)


def test_sampling_reproducible_with_generator(small):
    prompt = torch.zeros(3, 2, dtype=torch.long)
    a = generate(small, prompt, 8, generator=torch.Generator().manual_seed(5))
    b = generate(small, prompt, 8, generator=torch.Generator().manual_seed(5))
    c = generate(small, prompt, 8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generate_past_context_and_eos(small):
    prompt = torch.randint(0, SMALL.vocab_size, (2, 10))
    out = generate(small, prompt, 3 * SMALL.context, temperature=0.8, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 10 + 3 * SMALL.context)
    long_prompt = torch.randint(0, SMALL.vocab_size, (1, 2 * SMALL.context + 3))
    out = generate(small, long_prompt, 4, temperature=0)
    assert out.shape == (1, 2 * SMALL.context + 7) and torch.equal(out[:, : long_prompt.shape[1]], long_prompt)
    want = small(long_prompt[:, -SMALL.context :])[:, -1].argmax(-1)  # conditions on the last context window
    assert out[0, long_prompt.shape[1]] == want[0]
    # row 0 emits eos (5) at once; row 1 twice later -> stop early, row 0 padded with eos
    calls = {"n": 0}

    def proc(input_ids, scores):
        calls["n"] += 1
        out = torch.full_like(scores, float("-inf"))
        out[0, 5] = 0
        out[1, 5 if calls["n"] >= 3 else 9] = 0
        return out

    out = generate(small, prompt[:, :4], 20, logits_processor=proc, eos_id=5)
    assert out.shape == (2, 7)
    assert out[0, 4:].tolist() == [5, 5, 5] and out[1, 4:].tolist() == [9, 9, 5]


def test_generate_bad_input(small):
    with pytest.raises(ValueError, match="LongTensor"):
        generate(small, torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(small, torch.zeros(1, 3, dtype=torch.long), -1)
    with pytest.raises(ValueError, match="temperature"):
        generate(small, torch.zeros(1, 3, dtype=torch.long), 1, temperature=-1.0)
    with pytest.raises(ValueError, match="token ids"):
        generate(small, torch.full((1, 3), 999, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="shape"):
        generate(small, torch.zeros(1, 3, dtype=torch.long), 1, logits_processor=lambda i, s: s[:, :3])
    assert generate(small, torch.zeros(1, 3, dtype=torch.long), 0).shape == (1, 3)


def test_token_logprobs_and_perplexity(small):
    torch.manual_seed(4)
    ids = torch.randint(0, SMALL.vocab_size, (2, SMALL.context))
    lp = token_logprobs(small, ids)
    ref = torch.log_softmax(small(ids), -1)[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    assert lp.shape == (2, SMALL.context - 1) and torch.allclose(lp, ref, atol=1e-5)
    # longer than the context: sliding window; every position scored once with enough history
    long = torch.randint(0, SMALL.vocab_size, (3 * SMALL.context + 5,))
    lp = token_logprobs(small, long, stride=4)
    assert lp.shape == (long.numel() - 1,) and torch.isfinite(lp).all()
    t = 2 * SMALL.context  # reference for one late position: its last `context` tokens
    win = long[t - SMALL.context + 1 : t + 1][None]
    want = torch.log_softmax(small(win)[0, -2], -1)[long[t]]
    got_full_window = token_logprobs(small, long, stride=1)[t - 1]
    assert torch.allclose(got_full_window, want, atol=1e-5)
    p = perplexity(small, long.tolist())
    assert p.n_tokens == long.numel() - 1 and abs(p.ppl - float(torch.exp(-token_logprobs(small, long).mean()))) < 1e-3
    assert float(p) == p.ppl
    nested = token_logprobs(small, ids[:, :8].tolist())  # list of lists -> [B, T-1]
    assert nested.shape == (2, 7) and torch.allclose(nested, token_logprobs(small, ids[:, :8]))
    with pytest.raises(ValueError, match="2 tokens"):
        perplexity(small, [1])


# -- weight files -----------------------------------------------------------------------------------
def test_tensor_file_roundtrip(tmp_path):
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5.0), "c": torch.empty(0)}
    write_tensors(tmp_path / "w.bin", sd)
    back = read_tensors(tmp_path / "w.bin")
    assert set(back) == set(sd)
    assert torch.equal(back["a"], sd["a"].half().float()) and back["a"].dtype == torch.float32
    write_tensors(tmp_path / "w2.bin", sd)
    assert (tmp_path / "w.bin").read_bytes() == (tmp_path / "w2.bin").read_bytes()  # deterministic
    (tmp_path / "x.bin").write_bytes(b"nope" * 10)
    with pytest.raises(ValueError, match="not a wmark weights file"):
        read_tensors(tmp_path / "x.bin")


def test_save_load_and_sha256_mismatch(tmp_path, tiny_tok):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tiny_tok.vocab_size, context=16, d_model=32, n_layer=1, n_head=2)
    lm = LanguageModel(GPT(cfg).eval(), tiny_tok, name="mini")
    sums = save_dir(lm, tmp_path / "m", card={"name": "mini"})
    assert set(sums) == {"model.bin", "tokenizer.json", "card.json"}
    back = load_dir(tmp_path / "m", device="cpu")
    assert back.vocab_size == tiny_tok.vocab_size and back.device.type == "cpu"
    ids = torch.tensor([tiny_tok.encode("the lazy dog")])
    assert torch.allclose(back.model(ids), lm.model.half().float()(ids), atol=1e-4)
    # corrupt one byte of the weights -> a clear error naming the file
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "m", bad)
    data = bytearray((bad / "model.bin").read_bytes())
    data[-1] ^= 0xFF
    (bad / "model.bin").write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=r"sha256 mismatch for .*model\.bin"):
        load_dir(bad)
    (bad / "SHA256SUMS").unlink()
    with pytest.raises(WeightsIntegrityError, match="SHA256SUMS"):
        load_dir(bad)
    with pytest.raises(ValueError, match="vocab"):
        LanguageModel(GPT(SMALL), tiny_tok)


# -- fine-tuning ------------------------------------------------------------------------------------
def _snapshot(model: GPT) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_finetune_small_reduces_loss_and_copies(tiny_tok):
    from wmark.lm.train import finetune, finetune_run

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=tiny_tok.vocab_size, context=32, d_model=32, n_layer=1, n_head=2)
    lm = LanguageModel(GPT(cfg).eval(), tiny_tok, name="mini")
    before = _snapshot(lm.model)
    ids = torch.tensor(tiny_tok.encode("the quick brown fox jumps over the lazy dog. " * 12))
    p0 = perplexity(lm, ids).ppl
    res = finetune_run(lm, ids, steps=30, lr=3e-3, batch_size=4, seq_len=24, generator=torch.Generator().manual_seed(0))
    assert perplexity(res.lm, ids).ppl < 0.5 * p0
    assert res.lm.model is not lm.model and len(res.losses) == 30 and res.losses[-1] < res.losses[0]
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())  # original untouched
    # same generator seed -> same result
    again = finetune(lm, ids, steps=30, lr=3e-3, batch_size=4, seq_len=24, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(res.lm.model.state_dict().values(), again.model.state_dict().values()))
    # zero loss weights -> no update at all; list-of-sequences input with matching weights
    zero = finetune(lm, ids, steps=3, lr=1e-2, batch_size=2, seq_len=8, loss_weights=torch.zeros(ids.numel()))
    assert all(torch.equal(before[k], v) for k, v in zero.model.state_dict().items())
    seqs = [ids[:40].tolist(), ids[40:90].tolist()]
    w = [[1.0] * 40, [0.5] * 50]
    finetune(lm, seqs, steps=2, batch_size=2, seq_len=8, loss_weights=w)
    finetune(lm, ids.tolist(), steps=1, batch_size=2, seq_len=8, loss_weights=[0.5] * ids.numel())
    with pytest.raises(ValueError, match="token_ids"):
        finetune(lm, [1, "a"], steps=1)
    with pytest.raises(ValueError, match="loss_weights"):
        finetune(lm, ids, steps=1, loss_weights=torch.ones(3))
    with pytest.raises(ValueError, match="token_ids"):
        finetune(lm, torch.tensor([0, 10_000]), steps=1)
    with pytest.raises(ValueError, match="steps"):
        finetune(lm, ids, steps=-1)
