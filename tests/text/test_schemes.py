"""Closed-form and consistency checks of the text schemes."""
import hashlib
import json
import math

import numpy as np
import pytest
import torch

from wmark.keys import Key
from wmark.text import KGW, SCHEMES, Gumbel, Tournament, Unigram, make_scheme
from wmark.text import hashing, ops

V = 1000
ALL = sorted(SCHEMES)


def generate(scheme, B=8, T=200, V=V, seed=0, temperature=3.0):
    """Sample with random 'model' logits through the scheme's processor: [B, 5 + T]."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, V, (B, 5), generator=g)
    for _ in range(T):
        logits = torch.randn(B, V, generator=g) * temperature
        out = scheme(seq, logits)
        nxt = torch.multinomial(torch.softmax(out, -1), 1, generator=g)
        seq = torch.cat([seq, nxt], 1)
    return seq


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash", "minhash", "ngram", "unigram"])
def test_green_fraction_of_random_tokens_is_gamma(demo_key, seeding):
    gamma = 0.25
    s = Unigram(demo_key, 50_000, gamma=gamma) if seeding == "unigram" else KGW(demo_key, 50_000, gamma=gamma, seeding=seeding)
    ids = torch.randint(0, 50_000, (16, 3))
    green = s.green_mask(ids)
    n = green.numel()
    assert abs(green.double().mean().item() - gamma) < 5 * math.sqrt(gamma * (1 - gamma) / n) + 1e-3


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash", "minhash"])
def test_processor_adds_delta_exactly_on_the_green_list(demo_key, seeding):
    s = KGW(demo_key, V, gamma=0.3, delta=1.5, seeding=seeding)
    ids = torch.randint(0, V, (4, 7))
    scores = torch.randn(4, V)
    before = scores.clone()
    out = s(ids, scores)
    assert torch.equal(scores, before)  # input untouched
    diff = out - scores
    green = s.green_mask(ids)
    assert torch.allclose(diff[green], torch.tensor(1.5)) and torch.all(diff[~green] == 0)


@pytest.mark.parametrize("seeding", ["lefthash", "selfhash", "minhash", "ngram", "unigram"])
def test_generator_and_detector_agree_token_by_token(demo_key, seeding):
    """The green list used at generation is exactly what detection scores for each candidate."""
    s = Unigram(demo_key, 300) if seeding == "unigram" else KGW(demo_key, 300, seeding=seeding)
    ids = torch.randint(0, 300, (1, 6))
    green = s.green_mask(ids)[0]
    cands = torch.arange(300)
    seqs = torch.cat([ids.expand(300, -1), cands[:, None]], 1)
    ts = s.token_scores(seqs)
    assert torch.equal(ts.scores[:, -1] == 1.0, green)


def test_same_green_lists_across_batch_positions_and_dtypes(demo_key):
    s = KGW(demo_key, V, seeding="selfhash")
    ids = torch.randint(0, V, (6, 9))
    full = s.green_mask(ids)
    for i in range(6):
        assert torch.equal(s.green_mask(ids[i:i + 1])[0], full[i])
    scores = torch.randn(6, V)
    ref = s(ids, scores) - scores
    for dt in (torch.float16, torch.bfloat16, torch.float64):
        got = s(ids, scores.to(dt)) - scores.to(dt)
        assert torch.equal(got != 0, ref != 0)


def test_keys_separate_green_lists(demo_key):
    a = KGW(demo_key, 20_000).green_mask(torch.tensor([[5]]))
    b = KGW(Key.from_passphrase("another key"), 20_000).green_mask(torch.tensor([[5]]))
    overlap = (a & b).double().mean().item()
    assert abs(overlap - 0.25 ** 2) < 0.01
    assert torch.equal(a, KGW(Key.demo(), 20_000).green_mask(torch.tensor([[5]])))


@pytest.mark.parametrize("name", ALL)
def test_pvalues_valid_on_unmarked_tokens(demo_key, name):
    """On key-independent tokens: P[p <= alpha] <= alpha (+ sampling error), z ~ (0, 1) (the green-list
    schemes with ``lean=0``, their exact null; the default lean is conservative: tests/text/test_key_null.py)."""
    s = make_scheme(name, demo_key, V)
    if isinstance(s, KGW):
        s = make_scheme(name, demo_key, V, lean=0.0)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (2000, 120), generator=g)
    r = s.detect_batch(ids)
    n = len(r)
    for alpha in (0.01, 0.05, 0.2):
        assert (r.p_value <= alpha).mean() <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / n)
    assert abs(r.z_score.mean()) < 0.1 and abs(r.z_score.std() - 1) < 0.1
    assert (r.p_value <= 0.5).mean() > 0.4  # not trivially conservative


def test_gumbel_pvalues_uniform_ks(demo_key):
    from scipy.stats import kstest

    s = Gumbel(demo_key, V)
    ids = torch.randint(0, V, (1000, 100), generator=torch.Generator().manual_seed(2))
    assert kstest(s.detect_batch(ids).p_value, "uniform").pvalue > 1e-3


@pytest.mark.parametrize("name", ALL)
def test_marked_generation_is_detected_and_other_key_is_not(demo_key, name):
    s = make_scheme(name, demo_key, V)
    seq = generate(s, B=4, T=150)
    r = s.detect_batch(seq)
    assert r.detected.all() and (r.p_value < 1e-6).all()
    other = make_scheme(name, Key.from_passphrase("not the key"), V).detect_batch(seq)
    assert (other.p_value > 1e-3).all()


def test_dedup_ignores_repeated_ngrams(demo_key):
    s = KGW(demo_key, V, seeding="lefthash")
    ids = torch.tensor([1, 2, 3, 4] * 50)
    with_dedup = s.detect(ids)
    without = s.detect(ids, dedup=False)
    assert with_dedup.num_scored == 0  # every draw repeats: none is scored (repeats="drop")
    assert without.num_scored == 199
    from wmark.text.detect import detect_scores

    first = detect_scores(s.token_scores(ids), s.null, scheme="kgw", repeats="first")
    assert first.num_scored[0] == 4  # (4,1) (1,2) (2,3) (3,4)


def test_ignore_prefix_excludes_prompt(demo_key):
    s = KGW(demo_key, V)
    ids = torch.randint(0, V, (100,))
    assert s.detect(ids, ignore_prefix=30, dedup=False).num_scored == 70
    assert s.detect(ids, dedup=False).num_scored == 99


def test_windowed_detection_finds_a_marked_span(demo_key):
    s = KGW(demo_key, V, seeding="lefthash", delta=2.0)
    marked = generate(s, B=1, T=120, seed=3)[0, 5:]
    g = torch.Generator().manual_seed(4)
    human = torch.randint(0, V, (900,), generator=g)
    ids = torch.cat([human[:500], marked, human[500:]])
    r = s.detect(ids, windowed=True)
    assert r.window is not None and r.window.p_value_corrected < 1e-6
    # the best window overlaps the true span [500, 620) mostly
    lo, hi = max(r.window.start, 500), min(r.window.end, 620)
    assert (hi - lo) / (r.window.end - r.window.start) > 0.6
    assert r.detected
    d = json.loads(json.dumps(r.to_json()))
    assert d["window"]["p_value_corrected"] == r.window.p_value_corrected and d["detected"] is True
    assert "window" not in s.detect(ids).to_json()


def test_padded_batch_equals_single_sequences(demo_key):
    s = KGW(demo_key, V)
    a = torch.randint(0, V, (80,))
    b = torch.randint(0, V, (50,))
    batch = torch.zeros(2, 80, dtype=torch.long)
    batch[0], batch[1, :50] = a, b
    r = s.detect_batch(batch, lengths=[80, 50])
    assert r[0] == s.detect(a) and r[1] == s.detect(b)
    assert json.loads(json.dumps(r.to_json())) == [s.detect(a).to_json(), s.detect(b).to_json()]


@pytest.mark.parametrize("bad, match", [
    ([], "empty"),
    ([1, 2, V], "out of range"),
    ([-3, 4], "out of range"),
    ([[1.5, 2.0]], "integers"),
])
def test_detection_errors(demo_key, bad, match):
    with pytest.raises(ValueError, match=match):
        KGW(demo_key, V).detect_batch(bad)


def test_processor_errors(demo_key):
    s = KGW(demo_key, V)
    with pytest.raises(ValueError, match="vocab_size"):
        s(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, V + 1))
    with pytest.raises(ValueError, match="out of range"):
        s(torch.tensor([[V + 5]]), torch.zeros(1, V))
    with pytest.raises(ValueError, match="gamma"):
        KGW(demo_key, V, gamma=1.0)
    with pytest.raises(ValueError, match="unknown text scheme"):
        make_scheme("nope", demo_key, V)
    with pytest.raises(ValueError, match="seeding"):
        KGW(demo_key, V, seeding="bogus")


def test_repr_hides_key(demo_key):
    text = repr(KGW(demo_key, V))
    assert "fingerprint" in text and demo_key.derive("x").hex() not in text


def test_gumbel_processor_is_one_hot_argmax_of_r_pow_inv_p(demo_key):
    s = Gumbel(demo_key, 50)
    ids = torch.randint(0, 50, (3, 6))
    scores = torch.randn(3, 50)
    out = s(ids, scores)
    assert torch.all(torch.isfinite(out).sum(1) == 1)
    # brute force: r_v from the detector's own scoring path
    p = torch.softmax(scores.double(), -1)
    seqs = torch.cat([ids.repeat_interleave(50, 0), torch.arange(50).repeat(3)[:, None]], 1)
    sc = s.token_scores(seqs).scores[:, -1].reshape(3, 50)  # -log(1 - r)
    r = 1 - torch.exp(-sc)
    want = torch.argmax(torch.log(r) / p, -1)
    assert torch.equal(out.argmax(-1), want)


def _tournament_bruteforce(p, g):
    """Exact winner distribution: 2**m iid candidates, pairwise matches by layer, ties uniform."""
    import itertools

    K, m = g.shape
    dist = np.zeros(K)
    for cands in itertools.product(range(K), repeat=2 ** m):
        prob = np.prod([p[c] for c in cands])
        layer_dist = {tuple(cands): 1.0}
        for layer in range(m):
            nxt = {}
            for tup, w in layer_dist.items():
                outs = [[]]
                for i in range(0, len(tup), 2):
                    a, b = tup[i], tup[i + 1]
                    if g[a, layer] == g[b, layer]:
                        opts = [(a, 0.5), (b, 0.5)]
                    else:
                        opts = [(a if g[a, layer] > g[b, layer] else b, 1.0)]
                    outs = [o + [(c, q)] for o in outs for c, q in opts]
                for o in outs:
                    key = tuple(c for c, _ in o)
                    nxt[key] = nxt.get(key, 0.0) + w * np.prod([q for _, q in o])
            layer_dist = nxt
        for (winner,), w in layer_dist.items():
            dist[winner] += prob * w
    return dist


def test_tournament_distribution_matches_brute_force():
    rng = np.random.default_rng(0)
    K, m = 4, 2
    p = rng.dirichlet(np.ones(K))
    g = rng.integers(0, 2, (K, m))
    x = torch.tensor([[int(sum(int(g[k, l]) << l for l in range(m))) for k in range(K)]], dtype=torch.int32)
    got = ops.tournament_probs(torch.tensor(p)[None], x, m)[0].numpy()
    np.testing.assert_allclose(got, _tournament_bruteforce(p, g), atol=1e-12)


def test_tournament_weighted_and_mean_scores(demo_key):
    for score in ("mean", "weighted"):
        s = Tournament(demo_key, V, score=score, num_layers=20)
        seq = generate(s, B=2, T=120)
        assert (s.detect_batch(seq).p_value < 1e-6).all()


def test_unigram_is_a_fixed_list(demo_key):
    s = Unigram(demo_key, V)
    a = s(torch.tensor([[1, 2]]), torch.zeros(1, V))
    b = s(torch.tensor([[7, 9]]), torch.zeros(1, V))
    assert torch.equal(a, b)


@pytest.mark.parametrize("gamma,block", [(0.25, 4), (0.5, 2), (0.3, 10)])
def test_unigram_list_is_balanced_within_blocks(gamma, block):
    V = 1003  # a partial last block
    s = Unigram(Key.from_bytes(bytes(range(32))), V, gamma=gamma)
    assert s.block == block and s.params["block"] == block
    green = s.green_list()
    full = V // block * block
    assert (green[:full].view(-1, block).sum(1) == round(gamma * block)).all()
    # over keys every token, in a block or in the tail, is green with probability gamma
    hits = torch.stack([Unigram(Key.from_bytes(hashlib.sha256(b"%d" % i).digest()), V, gamma=gamma).green_list()
                        for i in range(400)])
    freq = hits.double().mean(0)
    sd = math.sqrt(gamma * (1 - gamma) / 400)
    assert abs(float(freq.mean()) - gamma) < 3 * sd / math.sqrt(V) + 1e-3
    assert float((freq - gamma).abs().max()) < 5.5 * sd


def test_unigram_block_1_is_the_unbalanced_list(demo_key):
    from wmark.text import hashing

    s = Unigram(demo_key, 5000, block=1)
    h = hashing.to_u32(s._table(torch.device("cpu"), "t"))
    want = torch.zeros(5000, dtype=torch.bool)
    want[torch.argsort(h, stable=True)[:1250]] = True
    assert torch.equal(s.green_list(), want) and s.gamma == 0.25
    with pytest.raises(ValueError, match="block must be an int >= 1"):
        Unigram(demo_key, 5000, block=0)
    with pytest.raises(ValueError, match="gamma \\* block must be a whole number"):
        Unigram(demo_key, 5000, gamma=0.3, block=4)


def test_dedup_is_on_seed_and_token(demo_key):
    """Unigram's seed is constant: dedup scores the tokens that occur once (repeats="first": each
    distinct token once)."""
    from wmark.text.detect import detect_scores

    s = Unigram(demo_key, V)
    ids = torch.tensor([3, 4, 5, 3, 4, 9, 3])
    assert s.detect(ids).num_scored == 2  # 5 and 9
    assert detect_scores(s.token_scores(ids), s.null, scheme="unigram", repeats="first").num_scored[0] == 4


def test_generation_seed_equals_detection_seed_with_sentinel_context(demo_key):
    """At the very first step the context is padded with the sentinel -1, whose keyed value is
    entry V of the context table; detection never scores those positions."""
    s = KGW(demo_key, V, seeding="minhash")
    u = s._table(torch.device("cpu"), "u")
    assert u.shape == (V + 1,)
    ids = torch.randint(0, V, (3, 10))
    c, _ = s._seeds(ids[:, -4:])
    assert torch.equal(c, hashing.context_min(u[ids[:, -4:]], 0))
    c0, _ = s._seeds(torch.tensor([[-1, -1, 7, 9]]))
    assert torch.equal(c0, hashing.context_min(u[torch.tensor([[V, V, 7, 9]])], 0))
    out = s(ids[:, :1], torch.zeros(3, V))  # 1 token of context: padded, must not fail
    assert out.shape == (3, V)
    lh = KGW(demo_key, V)
    assert int(lh._seeds(torch.tensor([[-1]]))[0]) == int(lh._table(torch.device("cpu"), "u")[V])


# ---- keys: 256-bit subkeys enter every scheme, never a cut seed ------------------------------------
SCHEME_CASES = [("kgw-lefthash", {}), ("kgw-selfhash", {}), ("kgw-minhash", {}), ("kgw", {"seeding": "ngram"}),
                ("unigram", {}), ("gumbel", {}), ("tournament", {}),
                ("tournament", {"seeding": "minhash"})]


@pytest.mark.parametrize("name, kw", SCHEME_CASES)
def test_schemes_derive_256_bit_subkeys_and_never_cut_seeds(monkeypatch, demo_key, name, kw):
    calls = []
    derive = Key.derive

    def spy(self, purpose, nbytes=32):
        calls.append((purpose, nbytes))
        return derive(self, purpose, nbytes)

    def no_seed(self, *a, **k):
        raise AssertionError("a text scheme called Key.seed (a cut seed)")

    monkeypatch.setattr(Key, "derive", spy)
    monkeypatch.setattr(Key, "seed", no_seed)
    s = make_scheme(name, demo_key, V, **kw)
    ids = torch.randint(0, V, (2, 12))
    s(ids, torch.randn(2, V))
    s(ids[:, :1], torch.randn(2, V))
    s.detect(ids[0])
    text_calls = [c for c in calls if c[0].startswith("text/")]
    assert {p.rsplit("/", 1)[1] for p, _ in text_calls} >= {"constants", "token", "context"}
    assert all(n == 32 for _, n in text_calls)


def _keys_differing_only_in_the_last_subkey_byte(monkeypatch):
    """Two Keys whose derive() outputs agree in every byte but the last (all purposes)."""
    def derive(self, purpose, nbytes=32):
        out = bytearray(hashlib.blake2b(purpose.encode(), digest_size=nbytes).digest())
        out[-1] ^= self._secret[0]  # only the last byte depends on the key
        return bytes(out)

    monkeypatch.setattr(Key, "derive", derive)
    return Key.from_bytes(bytes([1]) * 32), Key.from_bytes(bytes([2]) * 32)


@pytest.mark.parametrize("name, kw", SCHEME_CASES)
def test_no_code_path_truncates_the_subkeys(monkeypatch, name, kw):
    k1, k2 = _keys_differing_only_in_the_last_subkey_byte(monkeypatch)
    assert k1.derive("x")[:31] == k2.derive("x")[:31] and k1.derive("x") != k2.derive("x")
    s1, s2 = make_scheme(name, k1, V, **kw), make_scheme(name, k2, V, **kw)
    ids = torch.randint(0, V, (1, 400), generator=torch.Generator().manual_seed(3))
    a, b = s1.token_scores(ids).scores, s2.token_scores(ids).scores
    assert not torch.equal(a, b)  # different green lists / uniforms / g-values
    if isinstance(s1, KGW):
        m1, m2 = s1.green_mask(ids[:, :30]), s2.green_mask(ids[:, :30])
        assert 0.5 < (m1 != m2).double().mean().item() / (2 * s1.gamma * (1 - s1.gamma)) < 1.5  # unrelated


def test_constants_come_from_the_key(monkeypatch):
    """ngram's start value, unigram's constant seed and the anchor xor are keyed PRF outputs."""
    k1, k2 = _keys_differing_only_in_the_last_subkey_byte(monkeypatch)
    for name in ("gumbel", "unigram", "kgw-selfhash"):
        s1, s2 = make_scheme(name, k1, V), make_scheme(name, k2, V)
        assert s1._init != s2._init and s1._anchor != s2._anchor


def test_params_name_the_prf(demo_key):
    for name in ALL:
        assert make_scheme(name, demo_key, V).params["hash"] == "blake2b-256"


def test_first_occurrence_matches_python_reference():
    from wmark.text.detect import first_occurrence

    g = torch.Generator().manual_seed(5)
    keys = torch.randint(0, 6, (4, 30), generator=g)
    valid = torch.rand(4, 30, generator=g) > 0.3
    got = first_occurrence(keys, valid)
    for b in range(4):
        seen = set()
        for i in range(30):
            want = bool(valid[b, i]) and int(keys[b, i]) not in seen
            if valid[b, i]:
                seen.add(int(keys[b, i]))
            assert bool(got[b, i]) == want
