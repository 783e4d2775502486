"""Closed-form and consistency checks of the text schemes."""
import json
import math

import numpy as np
import pytest
import torch

from wmark.keys import Key
from wmark.text import KGW, SCHEMES, Gumbel, Tournament, Unigram, make_scheme
from wmark.text import ops

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
    """On key-independent tokens: P[p <= alpha] <= alpha (+ sampling error), z ~ (0, 1)."""
    s = make_scheme(name, demo_key, V)
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
    assert with_dedup.num_scored == 4  # (4,1) (1,2) (2,3) (3,4)
    assert without.num_scored == 199


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


def test_dedup_is_on_seed_and_token(demo_key):
    """Unigram's seed is constant: dedup keeps each distinct token once."""
    s = Unigram(demo_key, V)
    ids = torch.tensor([3, 4, 5, 3, 4, 9, 3])
    assert s.detect(ids).num_scored == 4


def test_generation_seed_equals_detection_seed_with_sentinel_context(demo_key):
    """At the very first step the context is padded with -1; detection never scores those
    positions, and for full contexts the table gather equals direct hashing."""
    s = KGW(demo_key, V, seeding="minhash")
    ids = torch.randint(0, V, (3, 10))
    c1, _ = s.seeding.seeds(ids[:, -4:], s._seed_ctx)
    c2, _ = s.seeding.seeds(ids[:, -4:], s._seed_ctx, table=s._table(ids.device, "u"))
    assert torch.equal(c1, c2)
    out = s(ids[:, :1], torch.zeros(3, V))  # 1 token of context: padded, must not fail
    assert out.shape == (3, V)


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
