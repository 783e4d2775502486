"""wmark.hf against real transformers: the mark is applied to the warped distribution.

A tiny randomly initialised Llama (vocabulary 32,000, one layer, hidden 32) is built from a config:
nothing is downloaded. Its head is scaled so the next-token distribution has a few dominant tokens.
"""
import json
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("transformers", reason="transformers (extra 'hf') not installed")
from scipy.stats import chisquare  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList  # noqa: E402

import wmark.hf as wh  # noqa: E402
from wmark.keys import Key  # noqa: E402
from wmark.text import make_scheme  # noqa: E402

V = 32000
PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: many small ops per step, and on shared cores each parallel op waits for a
    preempted thread (2-10x slower with 2 threads). Results do not depend on it."""
    from wmark.runtime.threads import set_threads

    restore = set_threads(1)
    yield
    restore()


@pytest.fixture(scope="module")
def model(one_thread):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=256, pad_token_id=PAD, bos_token_id=BOS,
                      eos_token_id=EOS)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        m.lm_head.weight.mul_(40.0)  # peaked: at T = 0.7 top-p 0.8 keeps ~5 tokens, at T = 1.5 ~500
    return m


def prompts(n, length=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, V, (n, length), generator=g)


def one_step(model, scheme, ids, **kw):
    torch.manual_seed(123)
    out = wh.generate(model, scheme, ids, attention_mask=torch.ones_like(ids), max_new_tokens=1,
                      return_dict_in_generate=True, output_scores=True, output_logits=True, **kw)
    return out.sequences[:, -1], out.logits[0], out.scores[0]


SAMPLING = [  # generate() kwargs (transformers' default top_k is 50: top_k=0 turns it off)
    {"do_sample": True, "temperature": 0.7, "top_k": 6},
    {"do_sample": True, "temperature": 1.5, "top_k": 6},
    {"do_sample": True, "temperature": 0.7, "top_k": 30, "top_p": 0.8},  # within the tournament's 40 candidates
    {"do_sample": True, "temperature": 1.5, "top_k": 30, "top_p": 0.8},
]
FULL_TOP_P = {"do_sample": True, "temperature": 1.5, "top_k": 0, "top_p": 0.8}  # ~500 tokens: Gumbel only


def warped(logits, kw):
    """The distribution the user asked for: transformers' own warpers on the raw logits."""
    if not kw.get("do_sample"):
        return logits
    return wh.warpers(**{k: v for k, v in kw.items() if k != "do_sample"})(None, logits)


def pit_chisquare(tokens, logits, rng, bins=10):
    """Randomised probability integral transform of each row's token under its own distribution
    (tokens ordered by decreasing probability), then chi-square of the PIT values on equal bins.
    Uniform under H0; ignoring temperature / top-k / top-p moves mass and shows up here."""
    p = torch.softmax(logits.double(), -1)
    assert bool((torch.gather(p, 1, tokens[:, None]) > 0).all()), "a token outside the warped support"
    ps, order = torch.topk(p, int((p > 0).sum(-1).max()), dim=-1)  # the support, by decreasing probability
    rank = (order == tokens[:, None]).int().argmax(-1)
    below = torch.cumsum(ps, -1).gather(1, rank[:, None])[:, 0] - ps.gather(1, rank[:, None])[:, 0]
    u = below.numpy() + rng.random(len(tokens)) * ps.gather(1, rank[:, None])[:, 0].numpy()
    counts = np.histogram(np.clip(u, 0, 1 - 1e-12), bins=bins, range=(0, 1))[0]
    return chisquare(counts).pvalue


def kw_id(kw):
    return ",".join(f"{k}={v}" for k, v in kw.items() if k != "do_sample") or "greedy"


@pytest.mark.parametrize("name,kw", [(n, kw) for n in ("gumbel", "tournament") for kw in SAMPLING]
                         + [pytest.param("gumbel", FULL_TOP_P, marks=pytest.mark.slow)],
                         ids=lambda x: x if isinstance(x, str) else kw_id(x))
def test_distortion_free_schemes_sample_the_warped_distribution(model, name, kw):
    """Over keys and contexts (4 keys x 120 prompts, one decoding step), the marked next token follows
    softmax(warped logits): chi-square on the probability integral transform."""
    ids = prompts(120)
    rng = np.random.default_rng(7)
    toks, logits = [], []
    for k in range(4):
        s = make_scheme(name, Key.from_passphrase(f"hf-distribution-{k}"), V)
        tok, raw, _ = one_step(model, s, ids, **kw)
        toks.append(tok)
        logits.append(warped(raw, kw))
    assert pit_chisquare(torch.cat(toks), torch.cat(logits), rng) > 1e-3


def test_gumbel_greedy_is_the_keyed_sample_of_the_model_distribution(model):
    ids = prompts(100)
    rng = np.random.default_rng(8)
    toks, logits = [], []
    for k in range(4):
        tok, raw, _ = one_step(model, make_scheme("gumbel", Key.from_passphrase(f"hf-greedy-key-{k}"), V), ids,
                               do_sample=False)
        toks.append(tok)
        logits.append(raw)
    assert pit_chisquare(torch.cat(toks), torch.cat(logits), rng) > 1e-3


def test_the_pitfall_order_fails_the_same_test(model):
    """Control: Gumbel in logits_processor= (before the warpers) ignores top_k: tokens outside it."""
    ids = prompts(150)
    s = make_scheme("gumbel", Key.from_passphrase("hf-pitfall-key"), V)
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="TopKLogitsWarper after the logits_processor"):
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=True,
                             temperature=0.7, top_k=2, logits_processor=LogitsProcessorList([s.processor()]),
                             return_dict_in_generate=True, output_logits=True)
    w = warped(out.logits[0], {"do_sample": True, "temperature": 0.7, "top_k": 2})
    outside = ~torch.isfinite(w.gather(1, out.sequences[:, -1:]))[:, 0]
    assert outside.float().mean() > 0.3


@pytest.mark.parametrize("name", ["kgw-lefthash", "kgw-selfhash", "kgw-minhash", "unigram"])
@pytest.mark.parametrize("kw", [{"do_sample": False}, *SAMPLING, FULL_TOP_P], ids=kw_id)
def test_kgw_bias_is_exactly_delta_on_the_warped_logits(model, name, kw):
    ids = prompts(6)
    s = make_scheme(name, Key.demo(), V, delta=1.75)
    _, raw, scores = one_step(model, s, ids, **kw)
    expect = warped(raw, kw) + s.green_mask(ids).float() * 1.75
    assert torch.equal(scores, expect)


def test_no_warning_through_the_helper_and_one_for_the_pitfall(model):
    ids = prompts(2)
    s = make_scheme("kgw-selfhash", Key.demo(), V)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        wh.generate(model, s, ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.7, top_p=0.9,
                    max_new_tokens=3)
    assert not [r for r in rec if "wmark" in str(r.message)]
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.7, max_new_tokens=4,
                       logits_processor=LogitsProcessorList([s.processor()]))
    msgs = [str(r.message) for r in rec if "wmark" in str(r.message)]
    assert len(msgs) == 1 and "delta acts as delta/T" in msgs[0] and "\n" not in msgs[0]
    bare = make_scheme("gumbel", Key.demo(), V)  # the scheme object itself in the list: warned once too
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(2):
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.7, top_p=0.9,
                           max_new_tokens=3, logits_processor=LogitsProcessorList([bare]))
    msgs = [str(r.message) for r in rec if "wmark" in str(r.message)]
    assert len(msgs) == 1 and "are ignored" in msgs[0] and "TopPLogitsWarper" in msgs[0]


def test_factory_with_warpers_equals_the_helper(model):
    """logits_processor(scheme, warpers) + neutral sampling == wmark.hf.generate (same seed, same tokens)."""
    ids = prompts(3)
    s = make_scheme("gumbel", Key.demo(), V)
    kw = {"temperature": 0.7, "top_k": 0, "top_p": 0.8}
    torch.manual_seed(5)
    a = wh.generate(model, s, ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=6, **kw)
    proc = wh.logits_processor(s, wh.warpers(**kw))
    torch.manual_seed(5)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        b = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=6,
                           logits_processor=LogitsProcessorList([proc]), **wh.neutral_sampling())
    assert not [r for r in rec if "wmark" in str(r.message)]
    assert torch.equal(a, b)
    torch.manual_seed(5)  # the path for a transformers whose watermarking hook runs before the warpers
    c = wh._generate_with_own_warpers(model, s, ids, wh._merged_config(model, {"do_sample": True, **kw}), None,
                                      None, {"attention_mask": torch.ones_like(ids), "do_sample": True,
                                             "max_new_tokens": 6, **kw})
    assert torch.equal(a, c)
    with pytest.warns(UserWarning, match="warped twice"):
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, max_new_tokens=2, temperature=0.5,
                       logits_processor=LogitsProcessorList([wh.logits_processor(s, wh.warpers(**kw))]))


def test_num_return_sequences_gives_distinct_marked_sequences(model):
    ids = prompts(1)
    s = make_scheme("gumbel", Key.demo(), V)
    torch.manual_seed(3)
    out = wh.generate(model, s, ids, attention_mask=torch.ones_like(ids), do_sample=True, num_return_sequences=4,
                      max_new_tokens=10)
    assert len({tuple(r) for r in out.tolist()}) == 4
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match="identical rows"):
        same = wh.generate(model, s, ids, attention_mask=torch.ones_like(ids), do_sample=True, num_return_sequences=4,
                           max_new_tokens=10, distinct_rows=False)
    assert len({tuple(r) for r in same.tolist()}) == 1


def test_helper_refuses_a_second_mark_and_a_wrong_vocabulary(model):
    ids = prompts(1)
    s = make_scheme("kgw", Key.demo(), V)
    with pytest.raises(ValueError, match="remove the wmark processor"):
        wh.generate(model, s, ids, logits_processor=LogitsProcessorList([s.processor()]))
    with pytest.raises(ValueError, match="vocab_size"):
        wh.generate(model, make_scheme("kgw", Key.demo(), V - 1), ids)
    cfg = wh.watermarking_config(s)
    assert cfg.to_dict() == {"wmark": s.params, "mask_repeated": None, "distinct_rows": None}  # never the key
    assert json.loads(cfg.to_json_string())["wmark"]["scheme"] == "kgw-selfhash"  # "kgw" is its alias


def test_tournament_warns_where_the_warped_support_exceeds_its_top_k(model):
    ids = prompts(2)
    s = make_scheme("tournament", Key.demo(), V, top_k=4)
    with pytest.warns(UserWarning, match="top_k=4"):
        wh.generate(model, s, ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=20, max_new_tokens=1)


def test_marked_left_padded_batch_detects_with_the_prompt_mask(model):
    """End to end: left-padded prompts, EOS-padded finished rows; detect with the prompt mask + eos_id."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (4, 8), generator=g)
    mask = torch.ones_like(ids)
    ids[:2, :3], mask[:2, :3] = PAD, 0
    s = make_scheme("kgw-selfhash", Key.demo(), V, delta=4.0)
    torch.manual_seed(0)
    out = wh.generate(model, s, ids, attention_mask=mask, do_sample=True, temperature=1.5, top_k=0,
                      max_new_tokens=40)
    r = s.detect_batch(out, attention_mask=mask, eos_id=EOS, pad_id=PAD, ignore_prefix=8)
    assert (r.p_value < 1e-4).all()


def test_warpers_follow_transformers_order_and_neutral_sampling_adds_none(model):
    names = [type(w).__name__ for w in wh.warpers(top_p=0.9, temperature=0.5, top_k=7, min_p=0.1)]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"]
    assert len(wh.warpers(**wh.neutral_sampling())) == 0
    procs = model._get_logits_processor(generation_config=wh._merged_config(
        model, {"do_sample": True, **wh.neutral_sampling()}), input_ids_seq_length=5)
    assert not [p for p in procs if type(p).__name__.endswith("LogitsWarper")]
    assert wh.hook_runs_after_warpers()


def test_beam_search_with_a_deterministic_scheme_warns(model):
    ids = prompts(1)
    with pytest.warns(UserWarning, match="beam search"):
        wh.generate(model, make_scheme("gumbel", Key.demo(), V), ids, attention_mask=torch.ones_like(ids),
                    num_beams=2, max_new_tokens=2)
