"""The detection procedure as a whole: one table, K from it, the p-value and bits of one read,
batched = one by one, the soft test and the decoder it relies on, embed's own verification, the
linear-cost perceptual mask."""
from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")


PAYLOAD = "0102030405ff"


def test_table_names_k_and_markdown():
    from wmark.image.model import HYPOTHESES, QUICK, hypothesis_table

    names = [h.name for h in HYPOTHESES]
    assert len(set(names)) == len(names) == 8
    assert set(QUICK) <= set(names) and names[0] == "origin"
    assert sum(h.fallback for h in HYPOTHESES) == 1
    table = hypothesis_table()
    assert table.count("\n") == len(HYPOTHESES) + 1 and all(f"| {n} |" in table for n in names)
    for h in HYPOTHESES:
        assert 0 <= h.until <= 1 and h.exists_for and h.gates and h.reads


def test_p_value_bits_and_agreement_come_from_the_winning_read(wm, photos, demo_key):
    """Re-test the winning hypothesis's read by hand: K x its p-value, its bits and its agreement are
    what the Detection reports (blind and with the payload known), on a clean, a cropped and an
    unmarked image."""
    from wmark.image.model import HYPOTHESES, _Search, decode_view, luma, origin_shift

    emb = wm.embed(photos[2][:256, :320], demo_key, PAYLOAD, verify=False)
    k = len(HYPOTHESES)
    for img in (emb.images, emb.images[10:250, 20:300], photos[2][:256, :320]):
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
        y = decode_view(luma(x))
        origin = origin_shift(x.shape[-2:], y.shape[-2:], 2, 32)
        for payload in (None, PAYLOAD):
            d = wm.detect(img, demo_key, payload=payload)
            assert d.n_hypotheses == k and d.hypothesis in d.tried
            assert list(d.tried) == [h.name for h in HYPOTHESES if h.name in d.tried]  # table order
            h = next(h for h in HYPOTHESES if h.name == d.hypothesis)
            with torch.no_grad():
                s = _Search(wm, y, origin)
                read = h.read(s, [0])[0]
            cw = None if payload is None else wm.code.encode(payload, demo_key)
            o = wm.test_read(read, demo_key, cw, h.aligns, d.alpha, k)
            assert d.p_value == pytest.approx(min(1.0, k * o.p), rel=1e-9)
            assert np.array_equal(d.bits, (o.logits > 0).astype(np.uint8)) and d.agree == o.agree


def test_detect_batched_equals_one_by_one(wm, photos, demo_key, monkeypatch):
    """Same-sized images are read as batches (groups by size, chunks of BATCH_PIXELS): every field
    of every Detection is what detecting the images one at a time gives (p-values to float rounding:
    a batched convolution may round its last bits differently)."""
    from wmark.image import model as M

    a = wm.embed(photos[0][:192, :256], demo_key, PAYLOAD, verify=False).images
    b = wm.embed(photos[1][:192, :256], demo_key, verify=False).images
    c = wm.embed(photos[2][:200, :240], demo_key, PAYLOAD, verify=False).images
    imgs = [a, photos[3][:192, :256], b, c, a[1:, 1:], photos[2][:200, :240], np.ascontiguousarray(a[:, ::-1])]
    monkeypatch.setattr(M, "BATCH_PIXELS", {"cpu": 2 * 192 * 256})  # two per pass: groups split into chunks
    for payload in (None, PAYLOAD):
        batch = wm.detect(imgs, demo_key, payload=payload)
        single = [wm.detect(im, demo_key, payload=payload) for im in imgs]
        assert len(batch) == len(imgs)
        for u, v in zip(batch, single):
            ju, jv = u.to_json(), v.to_json()
            assert ju.pop("p_value") == pytest.approx(jv.pop("p_value"), rel=1e-4) and ju == jv
            assert np.array_equal(u.bits, v.bits) and np.allclose(u.confidence, v.confidence, atol=1e-6)
    found = [d.detected for d in batch]
    assert found[0] and found[3] and found[4] and found[6] and not found[1] and not found[5]


def test_rademacher_tail_bounds_the_exact_tail():
    """The Chernoff bound is >= the exact tail of sum_i w_i s_i (all 2**10 sign patterns), equals
    2**-n at the top, and with equal weights is the binomial Chernoff bound."""
    from wmark.image.model import rademacher_log_tail

    g = np.random.default_rng(0)
    w = g.gamma(2.0, 1.0, 10)
    sums = np.array([np.dot(w, s) for s in itertools.product((-1.0, 1.0), repeat=10)])
    for t in np.linspace(0.1, w.sum() * 0.999, 25):
        exact = (sums >= t - 1e-12).mean()
        assert exact <= math.exp(rademacher_log_tail(w, t)) * (1 + 1e-9)
    assert rademacher_log_tail(w, w.sum()) == pytest.approx(-10 * math.log(2))
    assert rademacher_log_tail(w, -1.0) == 0.0
    ones = np.ones(20)
    a = 16  # agreements of 20: t = 2a - n; binomial Chernoff exp(-n KL(a/n || 1/2))
    q = a / 20
    kl = q * math.log(2 * q) + (1 - q) * math.log(2 * (1 - q))
    assert rademacher_log_tail(ones, 2 * a - 20) == pytest.approx(-20 * kl, rel=1e-6)


def test_code_matrix_and_osd_beyond_reed_solomon(wm, demo_key):
    """The keyed code is affine over GF(2) (CodeMatrix reproduces every codeword); OSD finds the
    codeword with 16 of 128 bits wrong among the least confident ones, where Reed-Solomon fails."""
    from wmark.image.model import CodeMatrix, osd_decode

    cm = CodeMatrix.of(wm.code, demo_key)
    g = np.random.default_rng(1)
    for _ in range(4):
        pl = g.bytes(6)
        bits = np.unpackbits(np.frombuffer(pl, np.uint8))
        cw = wm.code.encode(pl, demo_key)
        assert np.array_equal(cm.encode(bits), cw)
    mag = g.uniform(0.5, 3.0, 128)
    lg = np.where(cw == 1, mag, -mag)
    weak = np.argsort(mag)[:40]
    flip = g.choice(weak, 16, replace=False)
    lg[flip] = -lg[flip]
    hard = (lg > 0).astype(np.uint8)
    assert not wm.code.decode(hard, demo_key, np.abs(np.tanh(lg / 2))).ok or \
        not np.array_equal(wm.code.decode(hard, demo_key).codeword, cw)
    word, agree = osd_decode(lg, cm)
    assert np.array_equal(word, cw) and agree == 112
    payload, word2, agree2, fixed = wm.decode_bits(lg, demo_key)
    assert payload == pl and np.array_equal(word2, cw) and agree2 == 112 and fixed > 5


def test_soft_test_detects_where_the_hard_count_would_not(wm, demo_key):
    """A read with 18 of 128 bits wrong, all among the least confident: the binomial tail of the hard
    count cannot reach alpha after the union bound over 2**48 codewords; the soft test does."""
    from wmark.codes import codeword_pvalue
    from wmark.image.model import HYPOTHESES, Read

    g = np.random.default_rng(2)
    cw = wm.code.encode(g.bytes(6), demo_key)
    mag = np.sort(g.uniform(0.2, 3.0, 128))
    lg = np.where(cw == 1, mag, -mag)
    lg[:18] = -lg[:18]  # the 18 least confident are wrong
    k = len(HYPOTHESES)
    assert 2 * k * float(codeword_pvalue(110, 128, 48)) > 1e-3
    sh = torch.from_numpy(lg)[:, None].repeat(1, 4)
    o = wm.test_read(Read(sh, 0), demo_key, None, True, 1e-3, k)
    assert k * o.p < 1e-4 and o.agree == 110


def test_embed_reports_detectable(wm, shared_data, demo_key):
    """embed reads its own output back: a photo is detectable; a 64 px crop, a nearly white image
    are not, with a reason; verify=False skips it."""
    from PIL import Image

    img = np.asarray(Image.open(sorted((shared_data / "kodak").glob("*.png"))[4]).convert("RGB"))
    res = wm.embed([img, img[100:164, 200:264]], demo_key, PAYLOAD)
    assert res.detectable == (True, False) and res.reasons[0] is None
    assert "small" in res.reasons[1] and "p = " in res.reasons[1]
    assert res.p_values[0] < 1e-6 and len(res.p_values) == 2
    white = np.full((256, 256, 3), 255, np.uint8)
    white[100:120, 100:120] = 128
    r = wm.embed(white, demo_key, PAYLOAD)
    assert r.detectable == (False,) and "saturated" in r.reasons[0]
    r = wm.embed(img, demo_key, PAYLOAD, verify=False)
    assert r.detectable == () and r.reasons == () and r.p_values == ()


def test_box_mean_matches_the_direct_mean_at_a_cost_independent_of_the_window():
    from wmark.image import nets

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 300, 257, generator=g)
    for k in (3, 5, 31, 101):
        assert torch.allclose(nets.box_mean(x, k), nets.box_blur(x, k), atol=3e-5)  # float32 direct sums round
    big = torch.rand(1, 1, 1024, 1024, generator=g)

    def cost(k):
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            nets.box_mean(big, k)
            best = min(best, time.perf_counter() - t0)
        return best

    assert cost(401) < 4 * cost(3) + 0.05  # a direct 401 x 401 mean would cost ~18,000x the 3 x 3


def test_marks_unchanged_on_kodak(wm, shared_data, demo_key):
    """The prefix-sum mask gives the marks of the direct box filter within 8-bit rounding (a few
    pixels differ by one level) and the same PSNR; detection is unchanged."""
    import torch.nn.functional as F
    from PIL import Image

    from wmark.image import model as M
    from wmark.image import nets

    def direct_mask(x, floor=0.15, tau=0.04, guard=0.05):  # the committed implementation
        y = nets.luma(x)
        k = max(3, (min(y.shape[-2:]) // 100) | 1)

        def box(z):
            p = k // 2
            return F.avg_pool2d(F.pad(z, (p, p, p, p), mode="replicate"), k, stride=1)
        mu = box(y)
        var = (box(y * y) - mu * mu).clamp_min(0)
        act = box((var.add(1e-8).sqrt() / tau).clamp(floor, 1.0))
        sat = (torch.minimum(x.amin(1, keepdim=True), 1 - x.amax(1, keepdim=True)) / guard).clamp(0, 1)
        return act * sat

    for p in sorted((shared_data / "kodak").glob("*.png"))[:2]:
        img = np.asarray(Image.open(p).convert("RGB"))
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
        new = wm.embed(img, demo_key, PAYLOAD, verify=False).images
        signs = wm._signs(PAYLOAD, demo_key, 1)[0]
        with torch.no_grad():
            r = nets.shape_residual(wm.encoder(signs), direct_mask(x), wm.config.rms)
        old = (nets.apply_residual(x, r)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        diff = np.abs(new.astype(int) - old.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
        from wmark.image.quality import psnr

        assert abs(psnr(img, new) - psnr(img, old)) < 0.01
        assert M.load().detect(new, demo_key).p_value == pytest.approx(wm.detect(old, demo_key).p_value, rel=0.5)
