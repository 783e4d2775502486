"""Backends agree bit for bit; the scheme works as a Hugging Face logits processor."""
import numpy as np
import pytest
import torch

from wmark.keys import Key
from wmark.text import KGW, Gumbel, make_scheme
from wmark.text import ops
from wmark.text.processor import (WatermarkCore, duplicate_rows, is_deterministic, is_distortion_free,
                                  make_logits_processor, repeated_context)


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash"])
def test_compiled_kgw_matches_eager(demo_key, seeding):
    s_eager = KGW(demo_key, 5003, seeding=seeding, backend="eager")
    s_comp = KGW(demo_key, 5003, seeding=seeding, backend="compile")
    ids = torch.randint(0, 5003, (7, 9))
    scores = torch.randn(7, 5003)
    assert torch.equal(s_eager(ids, scores), s_comp(ids, scores))


def test_compiled_gumbel_matches_eager(demo_key):
    ids = torch.randint(0, 3001, (5, 9))
    scores = torch.randn(5, 3001)
    a = Gumbel(demo_key, 3001, backend="eager")(ids, scores)
    b = Gumbel(demo_key, 3001, backend="compile")(ids, scores)
    assert torch.equal(a, b)


def test_auto_backend_choice(monkeypatch):
    monkeypatch.delenv("WMARK_BACKEND", raising=False)
    small = torch.zeros(2, 100)
    big = torch.zeros(64, ops.COMPILE_MIN_ELEMENTS // 64)
    assert ops.resolve_backend("auto", small) == "eager"
    assert ops.resolve_backend("auto", big) == "auto-cpu"  # eager until compiling pays
    monkeypatch.setenv("WMARK_BACKEND", "compile")
    assert ops.resolve_backend("auto", big) == "compile"
    with pytest.raises(ValueError, match="backend"):
        ops.resolve_backend("fast", small)


def test_auto_on_cpu_runs_eager_until_the_compile_is_paid_for(monkeypatch):
    """Ski rental: eager (timed) until the eager seconds reach COMPILE_AFTER_S, then compiled."""
    monkeypatch.delenv("WMARK_BACKEND", raising=False)
    monkeypatch.setattr(ops, "_EAGER_S", {})
    monkeypatch.setattr(ops, "_READY", set())
    compiled = []
    monkeypatch.setattr(ops, "_run_compiled", lambda name, fn, *a: compiled.append(name) or fn(*a))
    fn = lambda x: x + 1  # noqa: E731
    monkeypatch.setattr(ops, "COMPILE_AFTER_S", 3600.0)
    for _ in range(3):
        ops._run_auto_cpu("k", fn, torch.zeros(3))
    assert compiled == [] and ops._EAGER_S["k"] > 0
    monkeypatch.setenv("WMARK_COMPILE_AFTER_S", "0")
    ops._run_auto_cpu("k", fn, torch.zeros(3))
    assert compiled == ["k"]
    monkeypatch.setenv("WMARK_COMPILE_AFTER_S", "inf")
    ops._EAGER_S["j"] = 1e9
    ops._run_auto_cpu("j", fn, torch.zeros(3))
    assert compiled == ["k"]
    monkeypatch.setenv("WMARK_COMPILE_AFTER_S", "soon")
    with pytest.raises(ValueError, match="WMARK_COMPILE_AFTER_S"):
        ops._run_auto_cpu("j", fn, torch.zeros(3))


def test_warm_up_compiles_now_and_restores_the_backend(monkeypatch, demo_key):
    compiled = []
    monkeypatch.setattr(ops, "_run_compiled", lambda name, fn, *a: compiled.append(name) or fn(*a))
    s = KGW(demo_key, 1000, seeding="selfhash")
    assert ops.warm_up(s, batch_size=3) >= 0 and compiled == ["kgw_self"] and s.backend == "auto"
    with pytest.raises(ValueError, match="batch_size"):
        ops.warm_up(s, batch_size=0)


def test_a_fresh_process_does_not_compile(tmp_path):
    """The first big marked call on CPU runs eager: torch._dynamo is never imported (no warm-up stall)."""
    import os
    import subprocess
    import sys

    code = ("import sys, time, torch\n"
            "from wmark import Key\nfrom wmark.text import make_scheme\n"
            "ids, scores = torch.zeros(8, 4, dtype=torch.long), torch.zeros(8, 49152)\n"
            "for name in ('kgw-lefthash', 'kgw-selfhash', 'gumbel'):\n"
            "    t0 = time.perf_counter(); make_scheme(name, Key.demo(), 49152)(ids, scores)\n"
            "    assert time.perf_counter() - t0 < 5, name\n"
            "assert 'torch._dynamo' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WMARK_BACKEND", "WMARK_COMPILE_AFTER_S")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_huggingface_generate_with_wmark_processor(demo_key):
    transformers = pytest.importorskip("transformers", reason="transformers (extra 'hf') not installed")
    from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessorList

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=500, n_positions=256, n_embd=32, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(cfg).eval()
    scheme = make_scheme("kgw-selfhash", demo_key, 500, delta=4.0)
    proc = scheme.processor()
    assert isinstance(proc, transformers.LogitsProcessor) and isinstance(proc, WatermarkCore)
    prompt = torch.randint(0, 500, (2, 5))
    out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, max_new_tokens=120,
                         logits_processor=LogitsProcessorList([proc]), pad_token_id=0, top_k=0)
    r = scheme.detect_batch(out, ignore_prefix=5)
    assert (r.p_value < 1e-4).all()
    assert (make_scheme("kgw-selfhash", Key.from_passphrase("x"), 500).detect_batch(out).p_value > 1e-3).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_compiled_kgw_matches_eager_in_half_precision(demo_key, dtype):
    ids = torch.randint(0, 4099, (3, 5))
    scores = torch.randn(3, 4099).to(dtype)
    a = KGW(demo_key, 4099, delta=1.3, backend="eager")(ids, scores)
    b = KGW(demo_key, 4099, delta=1.3, backend="compile")(ids, scores)
    assert a.dtype == dtype and torch.equal(a, b)


# ---- the processor's generation rules (no transformers needed) -------------------------------------
def test_deterministic_and_distortion_free_schemes(demo_key):
    flags = {n: (is_deterministic(make_scheme(n, demo_key, 100)), is_distortion_free(make_scheme(n, demo_key, 100)))
             for n in ("kgw-lefthash", "kgw-selfhash", "unigram", "gumbel", "tournament")}
    assert flags == {"kgw-lefthash": (False, False), "kgw-selfhash": (False, False), "unigram": (False, False),
                     "gumbel": (True, True), "tournament": (False, True)}


def test_repeated_context_and_duplicate_rows():
    ids = torch.tensor([[5, 6, 7, 8, 9, 5, 6, 7],   # last 3 (5 6 7) occurred at 0 and was followed by 8
                        [5, 6, 7, 8, 9, 1, 6, 7],
                        [1, 2, 3, 1, 2, 3, 4, 1]])  # (3 4 1) not before; (4 1) neither
    assert repeated_context(ids, 3).tolist() == [True, False, False]
    assert repeated_context(ids, 2).tolist() == [True, True, False]
    assert repeated_context(ids[:, :3], 3).tolist() == [False] * 3
    rows = torch.tensor([[1, 2], [3, 4], [1, 2], [1, 2], [3, 4], [0, 0]])
    assert duplicate_rows(rows).tolist() == [False, False, True, True, True, False]
    assert duplicate_rows(rows[:1]).tolist() == [False]


def test_gumbel_processor_samples_plainly_where_context_repeats_or_rows_are_copies(demo_key):
    V = 300
    s = Gumbel(demo_key, V, context_width=2)
    proc = make_logits_processor(s)
    assert proc.mask_repeated and proc.distinct_rows
    scores = torch.randn(4, V)
    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 9, 1, 2], [7, 7, 8, 1, 5], [1, 2, 3, 4, 5]])
    out = proc(ids, scores)
    marked = s(ids, scores)
    assert torch.equal(out[0], marked[0]) and torch.equal(out[2], marked[2])
    assert torch.equal(out[1], scores[1])  # context (1, 2) occurred at the start: plain
    assert torch.equal(out[3], scores[3])  # a copy of row 0: plain until it differs
    plain = make_logits_processor(s, mask_repeated=False, distinct_rows=False)
    with pytest.warns(UserWarning, match="identical rows"):
        assert torch.equal(plain(ids, scores), marked)
    kgw = make_logits_processor(KGW(demo_key, V))
    assert not kgw.mask_repeated and not kgw.distinct_rows
    assert torch.equal(kgw(ids, scores), KGW(demo_key, V)(ids, scores))


def test_processor_applies_its_warpers_before_the_mark(demo_key):
    V = 200
    s = KGW(demo_key, V, delta=3.0)
    halve = lambda ids, x: x / 2  # noqa: E731
    ids, scores = torch.randint(0, V, (3, 4)), torch.randn(3, V)
    assert torch.equal(make_logits_processor(s, halve)(ids, scores), s(ids, scores / 2))
    with pytest.raises(TypeError, match="warpers"):
        make_logits_processor(s, 0.5)


# ---- detect_batch with padding -----------------------------------------------------------------------
PAD_SCHEMES = ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram", "gumbel", "tournament"]


@pytest.mark.parametrize("name", PAD_SCHEMES)
def test_trailing_eos_padding_is_never_scored(name):
    """20 unmarked texts + 100 EOS pad tokens each, dedup=False: none detected at 1e-3 with eos_id."""
    V, EOS = 1000, 2
    g = torch.Generator().manual_seed(11)
    ids = torch.cat([torch.randint(3, V, (20, 80), generator=g), torch.full((20, 100), EOS)], dim=1)
    key = Key.from_passphrase("padding test key, not the demo")
    s = make_scheme(name, key, V)
    r = s.detect_batch(ids, eos_id=EOS, dedup=False)
    assert not r.detected.any() and (r.num_scored <= 80).all() and (r.num_tokens == 80).all()
    assert np.allclose(r.p_value, s.detect_batch(ids[:, :80], dedup=False).p_value, rtol=1e-12, atol=0)
    assert np.array_equal(s.detect_batch(ids, pad_id=[7, EOS], dedup=False).p_value, r.p_value)


@pytest.mark.parametrize("name", PAD_SCHEMES)
def test_left_padding_scores_as_unpadded(name, demo_key):
    V, PAD = 1000, 0
    g = torch.Generator().manual_seed(12)
    rows = [torch.randint(3, V, (n,), generator=g) for n in (60, 45, 30)]
    T = 70
    ids = torch.full((3, T), PAD)
    mask = torch.zeros(3, T, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r):], mask[b, T - len(r):] = r, 1
    s = make_scheme(name, demo_key, V)
    got = s.detect_batch(ids, attention_mask=mask)
    want = [s.detect(r) for r in rows]
    assert got.num_scored.tolist() == [w.num_scored for w in want]
    assert np.allclose(got.p_value, [w.p_value for w in want], rtol=1e-12, atol=0)
    ids[mask == 0] = -100  # padding may hold any id: it is never read
    assert np.allclose(s.detect_batch(ids, attention_mask=mask).p_value, got.p_value, rtol=1e-12, atol=0)
    # a prompt-width mask: columns past it count as real; right-padded tail cut by eos_id
    tail = torch.cat([ids, torch.full((3, 5), 2)], dim=1)
    assert np.allclose(s.detect_batch(tail, attention_mask=mask, eos_id=2).p_value, got.p_value, rtol=1e-12, atol=0)


def test_padding_arguments_are_checked(demo_key):
    s = KGW(demo_key, 100)
    ids = torch.randint(0, 100, (2, 10))
    with pytest.raises(ValueError, match="attention_mask"):
        s.detect_batch(ids, attention_mask=torch.ones(3, 10))
    with pytest.raises(ValueError, match="attention_mask"):
        s.detect_batch(ids, attention_mask=torch.ones(2, 11))
    with pytest.raises(ValueError, match="eos_id"):
        s.detect_batch(ids, eos_id="</s>")
    with pytest.raises(ValueError, match="padding"):
        s.detect_batch(ids, attention_mask=torch.zeros(2, 10))
    with pytest.raises(ValueError, match="out of range"):
        s.detect_batch(ids + 100, attention_mask=torch.ones(2, 10))


@pytest.mark.parametrize("shape", [(8, 4096), (3, 5003), (1, 128), (2, 129), (5, 70_000)])
def test_gumbel_eager_in_place_matches_the_reference(shape):
    g = torch.Generator().manual_seed(shape[1])
    B, V = shape
    c = torch.randint(-(2**31), 2**31 - 1, (B,), dtype=torch.int32, generator=g)
    t = torch.randint(-(2**31), 2**31 - 1, (V,), dtype=torch.int32, generator=g)
    for scores in (torch.randn(B, V, generator=g) * 4, torch.zeros(B, V),  # all tied on the scores
                   torch.where(torch.rand(B, V, generator=g) < 0.9, float("-inf"), torch.randn(B, V, generator=g)),
                   torch.randn(B, V, generator=g).half()):
        for _ in range(2):  # the second call reuses the kept buffers
            assert torch.equal(ops.gumbel_argmax_eager(scores, c, t), ops.gumbel_argmax(scores, c, t))


def test_first_argmin_is_torch_argmin():
    g = torch.Generator().manual_seed(0)
    for V in (1, 127, 128, 300, 1000):
        w = torch.randint(-3, 3, (6, V), generator=g).float()  # many ties
        w[1, V // 2] = float("nan")
        w[2, :] = float("nan")
        w[3, -1] = float("-inf")
        w[4, :] = float("inf")
        assert torch.equal(ops.first_argmin(w), torch.argmin(w, -1)), V
