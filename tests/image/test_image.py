"""Neural image watermark: round trips, null p-values, key separation, strip, I/O."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wmark.keys import Key  # noqa: E402

PAYLOAD = "0102030405ff"


def _psnr(a, b, peak=1.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mse = ((a - b) ** 2).mean()
    return 10 * np.log10(peak ** 2 / max(mse, 1e-20))


def test_import_is_light():
    import subprocess
    import sys

    code = "import wmark.image, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_weights_card_and_size():
    from importlib.resources import files

    root = files("wmark.image") / "weights"
    assert (root / "default.pt").is_file() and (root / "MODEL_CARD.md").is_file()
    assert len((root / "default.pt").read_bytes()) < 8 * 2 ** 20


def test_numpy_round_trip(wm, photos, demo_key):
    img = photos[0]
    res = wm.embed(img, demo_key, PAYLOAD)
    out = res.images
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert _psnr(img, out, 255) > 40
    d = wm.detect(out, demo_key, payload=PAYLOAD)
    assert d.detected and d.p_value < 1e-5
    assert d.bits.shape == (128,) and d.confidence.shape == (128,)
    assert (d.bits == res.bits).mean() > 0.7


def test_default_payload_detects(wm, photos, demo_key):
    """Marks made without a payload are tested against the key's default codeword (exact tail)."""
    for img in photos[1:3]:
        out = wm.embed(img, demo_key).images
        d = wm.detect(out, demo_key)
        assert d.detected and d.p_value < 1e-5 and d.payload == bytes(6)
        assert not wm.detect(out, Key.from_passphrase("someone else")).detected


def test_payload_is_read(wm, photos, demo_key):
    """Without knowing the payload, the RS-decoded payload comes back on most clean marked photos."""
    hits = 0
    for img in photos:
        d = wm.detect(wm.embed(img, demo_key, PAYLOAD).images, demo_key)
        hits += d.detected and d.payload_hex == PAYLOAD
        assert d.payload_hex in (None, PAYLOAD)
    assert hits >= 1


def test_tensor_batch_round_trip(wm, photos, demo_key):
    x = torch.stack([torch.from_numpy(p[:256, :320]).permute(2, 0, 1).float() / 255 for p in photos[:3]])
    y = wm.embed(x, demo_key, PAYLOAD).images
    assert isinstance(y, torch.Tensor) and y.shape == x.shape and y.dtype == x.dtype
    dets = wm.detect(y, demo_key, payload=PAYLOAD)
    assert len(dets) == 3 and all(d.detected for d in dets)
    assert all(not d.detected for d in wm.detect(x, demo_key, payload=PAYLOAD))
    assert all(not d.detected for d in wm.detect(x, demo_key))


def test_pil_gray_rgba_odd_sizes(wm, photos, demo_key):
    from PIL import Image

    rgb = Image.fromarray(photos[1][:201, :333])
    gray = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    a = np.array(rgba)
    a[..., 3] = np.linspace(0, 255, a.shape[1]).astype(np.uint8)[None]
    rgba = Image.fromarray(a, "RGBA")
    for img in (rgb, gray, rgba):
        out = wm.embed(img, demo_key, PAYLOAD).images
        assert out.mode == img.mode and out.size == img.size
        assert wm.detect(out, demo_key, payload=PAYLOAD).p_value < 1e-3
    out = wm.embed(rgba, demo_key, PAYLOAD).images
    assert (np.array(out)[..., 3] == a[..., 3]).all()  # alpha untouched


def test_16bit(wm, photos, demo_key):
    img16 = (photos[2][:200, :300].astype(np.uint16) * 257)
    out = wm.embed(img16, demo_key, PAYLOAD).images
    assert out.dtype == np.uint16
    assert wm.detect(out, demo_key, payload=PAYLOAD).detected


def test_small_image_64(wm, photos, demo_key):
    out = wm.embed(photos[3][:64, :64], demo_key, PAYLOAD).images
    assert out.shape == (64, 64, 3)
    wm.detect(out, demo_key)  # runs; small images carry less signal


def test_key_separation(wm, photos, demo_key):
    other = Key.from_passphrase("someone else")
    for img in photos[:2]:
        out = wm.embed(img, demo_key, PAYLOAD).images
        d = wm.detect(out, other)
        assert not d.detected and d.p_value > 1e-3 and d.payload is None
        # even knowing the payload, the other key's codeword is not there
        assert wm.detect(out, other, payload=PAYLOAD).p_value > 1e-4


def test_known_payload_detection(wm, photos, demo_key):
    out = wm.embed(photos[1], demo_key, PAYLOAD).images
    assert wm.detect(out, demo_key, payload=PAYLOAD).p_value < 1e-8
    assert wm.detect(photos[1], demo_key, payload=PAYLOAD).p_value > 1e-4


def test_strip_restores_and_removes(wm, photos, demo_key):
    for img in photos[:3]:
        marked = wm.embed(img, demo_key, PAYLOAD).images
        res = wm.strip(marked, demo_key, payload=PAYLOAD)
        assert res.removed == (True,)
        assert _psnr(img, res.images, 255) >= 55
        d = wm.detect(res.images, demo_key, payload=PAYLOAD)
        assert d.p_value > 0.01
        assert (d.bits == wm.embed(img, demo_key, PAYLOAD).bits).mean() <= 0.65


def test_strip_reads_payload(wm, photos, demo_key):
    """Without a payload, strip uses the one it reads (where it can)."""
    done = 0
    for img in photos:
        marked = wm.embed(img, demo_key, PAYLOAD).images
        res = wm.strip(marked, demo_key)
        if res.removed[0]:
            done += 1
            assert _psnr(img, res.images, 255) >= 55
        else:
            assert (res.images == marked).all()
    assert done >= 1


def test_strip_unmarked_is_noop(wm, photos, demo_key):
    res = wm.strip(photos[0], demo_key)
    assert res.removed == (False,) and (res.images == photos[0]).all()


@pytest.mark.parametrize("dy,dx", [(0, 1), (1, 0), (1, 1), (3, 6)])
def test_crop_any_offset_reads_bits(wm, photos, demo_key, dy, dx):
    """Odd crop offsets move the tile half a working pixel off the decoder's 2x2 grid: the pooling
    phase search must bring the carried bits back, not only the RS-corrected payload."""
    res = wm.embed(photos[0], demo_key, PAYLOAD)
    crop = res.images[10 + dy:10 + dy + 240, 20 + dx:20 + dx + 300]
    d = wm.detect(crop, demo_key)
    assert d.detected and d.payload_hex == PAYLOAD
    assert (d.bits == res.bits).mean() >= 0.97


@pytest.mark.parametrize("angle", [10.0, -7.0])
def test_rotation_is_undone(wm, photos, demo_key, angle):
    """Rotation (PIL, about the centre) is read from the tile lattice, including its 45-degree /
    sqrt(2) aliases; the payload and nearly all carried bits come back."""
    from PIL import Image

    res = wm.embed(photos[2], demo_key, PAYLOAD)
    rot = np.asarray(Image.fromarray(res.images).rotate(angle, resample=Image.BILINEAR))
    assert not wm.detect(rot, demo_key, search=False).detected
    d = wm.detect(rot, demo_key)
    assert d.detected and d.payload_hex == PAYLOAD
    assert (d.bits == res.bits).mean() >= 0.95


def test_null_pvalues(wm, shared_data, demo_key):
    """Unmarked training crops: the p-value is (conservatively) valid under the null."""
    from wmark.image.data import load_images, sample_batch

    imgs = load_images(shared_data / "train")[:120]
    gen = torch.Generator().manual_seed(123)
    x = sample_batch(imgs, 150, 96, gen)
    dets = wm.detect(x, demo_key)
    ps = np.array([d.p_value for d in dets])
    assert (ps < 0.05).mean() <= 0.05
    assert (ps < 1e-3).sum() == 0


def test_null_pvalues_known_payload(wm, shared_data, demo_key):
    """With a known payload the detector also tests the best-agreeing of the t*t cyclic shifts
    (Bonferroni x t*t, x2): still valid under the null, and the reported bits stay the key-blind
    read unless that test detects (no selection bias toward the codeword)."""
    from wmark.image.data import load_images, sample_batch

    imgs = load_images(shared_data / "train")[:120]
    x = sample_batch(imgs, 120, 96, torch.Generator().manual_seed(321))
    for search in (False, True):
        dets = wm.detect(x, demo_key, payload=PAYLOAD, search=search)
        ps = np.array([d.p_value for d in dets])
        assert (ps < 0.1).mean() <= 0.1 and (ps < 1e-3).sum() == 0
    expected = wm.code.encode(bytes.fromhex(PAYLOAD), demo_key)
    agree = np.array([(d.bits == expected).mean() for d in dets])
    assert abs(agree.mean() - 0.5) < 0.03  # the best of 1024 shifts would agree ~0.64


def test_blind_search_reports_the_denoised_read_under_noise(wm, photos, demo_key):
    """Blind, very heavy noise (the low-passed reads are made: noise_level >= NOISE_HIGH): where no
    hypothesis detects, the read reported (bits, p-value) is the fallback one, the raw and low-passed
    reads summed -- more of its bits right than the raw read at the shift of largest energy."""
    from wmark.attacks import get_attack

    accs = []
    for i, photo in enumerate(photos):
        res = wm.embed(photo, demo_key, PAYLOAD, verify=False)
        x = torch.from_numpy(res.images.copy()).permute(2, 0, 1)[None].float() / 255
        for seed in (i, i + 10):
            y = get_attack("noise")(x, 1.0, torch.Generator().manual_seed(seed))
            y = (y[0].permute(1, 2, 0) * 255).round().byte().numpy()
            single, ds = wm.detect(y, demo_key, hypotheses=("shift",)), wm.detect(y, demo_key)
            if ds.detected:
                continue
            assert ds.payload is None and ds.hypothesis == "denoised"
            accs.append(((single.bits == res.bits).mean(), (ds.bits == res.bits).mean()))
    assert len(accs) >= 3
    raw, multi = np.mean(accs, 0)
    assert multi > raw + 0.03, (raw, multi)


def test_unmarked_images_pay_for_one_read(wm, shared_data, demo_key):
    """The low-passed reads wait for a trace of the key (a read so far below TRACE_MAX) unless the image
    is very noisy: unmarked photos, noisy ones included, are read once; a noisy marked photo with a
    trace gets them."""
    from PIL import Image

    from wmark.attacks import get_attack
    from wmark.image.model import NOISE_HIGH, NOISE_MIN, luma, noise_level

    def noise(a):
        return float(noise_level(luma(torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255))[0])

    paths = sorted((shared_data / "train").glob("*.jpg"))[:40]
    noisy = [a for a in (np.asarray(Image.open(p).convert("RGB")) for p in paths) if NOISE_MIN <= noise(a) < NOISE_HIGH]
    assert len(noisy) >= 5
    for a in noisy[:5]:
        d = wm.detect(a, demo_key)
        assert not d.detected and not {"denoised", "lowpass-0.8", "lowpass-1.6"} & set(d.tried), d.tried
    emb = wm.embed(noisy[0], demo_key, PAYLOAD, verify=False).images
    x = torch.from_numpy(emb.copy()).permute(2, 0, 1)[None].float() / 255
    y = (get_attack("degradation")(x, 0.3, torch.Generator().manual_seed(0))[0].permute(1, 2, 0) * 255).round().byte().numpy()
    d = wm.detect(y, demo_key)
    assert NOISE_MIN <= noise(y) < NOISE_HIGH and "denoised" in d.tried and d.detected


def test_report_logits_prefers_origin_within_margin():
    """report_logits: the origin's logits unless another shift's alignment score beats it by more than
    ORIGIN_MARGIN robust standard deviations; no origin -> the best-scoring shift; shape [B, n]."""
    from wmark.image.model import ORIGIN_MARGIN, alignment_scores, report_logits

    g = torch.Generator().manual_seed(0)
    sh = torch.randn(1, 128, 1024, generator=g)
    sc = alignment_scores(sh)
    assert sc.shape == (1, 1024) and bool((sc >= 0).all())
    assert torch.allclose(alignment_scores(7 * sh), sc)  # scale-free: logits / their median |logit|
    best = int(sc.argmax())
    assert torch.equal(report_logits(sh, None), sh[:, :, best])
    med = sc.median()
    spread = 1.4826 * (sc - med).abs().median()
    o = int((sc - (sc.max() - 0.5 * ORIGIN_MARGIN * spread)).abs().argmin())  # within the margin
    assert o != best and torch.equal(report_logits(sh, o), sh[:, :, o])
    o = int(sc.argmin())  # far below the best
    assert float(sc.max() - sc[0, o]) > ORIGIN_MARGIN * float(spread)
    assert torch.equal(report_logits(sh, o), sh[:, :, best])


def test_origin_shift_matches_embedding(wm, photos, demo_key):
    """origin_shift: where a clean marked image's tiles start on the decoder's shift grid, also for
    images larger than the decoded view (a view whose offset is a whole number of tiles)."""
    from wmark.image.model import decode_view, origin_shift
    from wmark.image.nets import luma

    t, f = wm.config.tile, wm.config.factor
    x = torch.from_numpy(photos[0].copy()).permute(2, 0, 1)[None].float() / 255
    for h, w in [(321, 481), (1600, 1540)]:
        xi = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear")
        y = decode_view(luma(wm.embed_tensor(xi, demo_key)))
        al = wm.read_all(wm.decoder.features(y))[1]
        assert int(al.pow(2).sum(1).argmax()) == origin_shift((h, w), y.shape[-2:], f, t)
    assert origin_shift((1539, 800), (1536, 800), f, t) == 0
    assert origin_shift((1700, 800), (1536, 800), f, t) == 0


def test_denoised_read_at_origin_under_heavy_noise(wm, shared_data, demo_key, monkeypatch):
    """The denoised hypothesis reads at the image's own tile origin unless another shift clearly beats
    it: blur + noise + JPEG at 0.5 on uncropped photos, more bits right than at the best-scoring shift."""
    from PIL import Image

    from wmark.attacks import get_attack
    from wmark.image import model as M

    paths = sorted((shared_data / "train").glob("bsds_*.jpg"))[4:12]
    accs = []
    for i, p in enumerate(paths):
        res = wm.embed(np.asarray(Image.open(p).convert("RGB")), demo_key, PAYLOAD, verify=False)
        x = torch.from_numpy(res.images.copy()).permute(2, 0, 1)[None].float() / 255
        y = get_attack("degradation")(x, 0.5, torch.Generator().manual_seed(i))
        y = (y[0].permute(1, 2, 0) * 255).round().byte().numpy()
        with monkeypatch.context() as mp:
            mp.setattr(M, "ORIGIN_MARGIN", -1e9)  # never the origin
            best = wm.detect(y, demo_key, hypotheses=("denoised",))
        ds = wm.detect(y, demo_key, hypotheses=("denoised",))
        accs.append(((best.bits == res.bits).mean(), (ds.bits == res.bits).mean()))
    at_best, at_origin = np.mean(accs, 0)
    assert at_origin > at_best + 0.05, (at_best, at_origin)


def test_combine_views_scale_and_shape():
    """combine_views: shape [B, n] / [B, n, S]; one view is returned unchanged (best shift by energy);
    a view repeated adds nothing; a view's overall scale does not change the combination."""
    from wmark.image.model import combine_views

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 16, 9, generator=g), torch.randn(2, 16, 9, generator=g)
    lg, al = combine_views([a])
    assert lg.shape == (2, 16) and al.shape == (2, 16, 9)
    assert torch.allclose(al, a)
    i = a.pow(2).sum(1).argmax(-1)
    assert torch.allclose(lg, a[torch.arange(2), :, i])
    assert torch.allclose(combine_views([a, a])[1], a, atol=1e-6)
    assert torch.allclose(combine_views([a, 5 * b])[1], combine_views([a, b])[1], atol=1e-5)


@pytest.mark.parametrize("content,msg", [(b"", "empty"), (b"hello, not an image", "not an image"),
                                         (None, "cannot read")])
def test_bad_files(tmp_path, content, msg):
    from PIL import Image

    from wmark.image import io as imio

    p = tmp_path / "bad.png"
    if content is None:  # truncated PNG
        src = tmp_path / "ok.png"
        Image.fromarray(np.zeros((100, 100, 3), np.uint8) + 7).save(src)
        p.write_bytes(src.read_bytes()[:60])
    else:
        p.write_bytes(content)
    with pytest.raises(ValueError, match=msg):
        imio.load(p)


def test_too_small(wm, demo_key):
    with pytest.raises(ValueError, match="at least 64"):
        wm.embed(np.zeros((10, 10, 3), np.uint8), demo_key)


def test_functional_core_shapes():
    from wmark.image.model import Config, ImageWatermarker

    m = ImageWatermarker(Config())
    x = torch.rand(2, 3, 96, 80)
    bits = torch.randint(0, 2, (2, 128)).float()
    marked, logits = m(x, bits)
    assert marked.shape == x.shape and logits.shape == (2, 128)
    r = (marked - x)[:, 0]
    assert float(r.pow(2).mean().sqrt()) == pytest.approx(m.config.rms, rel=0.1)


def test_weak_known_detection_reads_low_passed_views(wm, shared_data, demo_key, monkeypatch):
    """A read that detects but with under RECHECK_AGREE of its bits agreeing with the codeword (heavy
    blur + noise + JPEG) also reads the low-passed views, whose sum is one more hypothesis: on average
    more bits right than the single read, a p-value no larger than the single read's x the ratio of
    Bonferroni factors. A marked image read with at least that agreement reads no low-passed view."""
    from wmark.attacks import get_attack
    from wmark.image import model as M

    views = []
    denoise = M.denoise_view
    monkeypatch.setattr(M, "denoise_view", lambda y, s: views.append(s) or denoise(y, s))
    k = len(M.HYPOTHESES)
    from PIL import Image

    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((shared_data / "train").glob("bsds_*.jpg"))[:12]]
    gains = []
    for i, photo in enumerate(photos):
        res = wm.embed(photo, demo_key, PAYLOAD)
        views.clear()
        d0 = wm.detect(res.images, demo_key, payload=PAYLOAD)
        assert d0.detected and (views == []) == (d0.agree >= M.RECHECK_AGREE * d0.n_bits)
        x = torch.from_numpy(res.images.copy()).permute(2, 0, 1)[None].float() / 255
        for strength in (0.4, 0.5):
            y = get_attack("degradation")(x, strength, torch.Generator().manual_seed(i))
            y = (y[0].permute(1, 2, 0) * 255).round().byte().numpy()
            single = wm.detect(y, demo_key, payload=PAYLOAD, search=False)
            if not (single.detected and single.agree < M.RECHECK_AGREE * single.n_bits):
                continue
            views.clear()
            ds = wm.detect(y, demo_key, payload=PAYLOAD)
            assert views == list(M.DENOISE_SIGMAS)
            # single: the QUICK pair (x2); the full table: x k over more reads, so at most k / 2 x larger
            assert ds.detected and ds.p_value <= min(1.0, single.p_value * k / len(M.QUICK)) * (1 + 1e-9)
            gains.append((ds.bits == res.bits).mean() - (single.bits == res.bits).mean())
    assert len(gains) >= 8, f"only {len(gains)} reads in the weak-detection regime"
    assert np.mean(gains) > 0.01, gains


def test_strength_trades_psnr_for_robustness(wm, photos, demo_key):
    from wmark.attacks import get_attack

    jpeg = get_attack("jpeg")
    img = photos[0]
    psnr, p_jpeg = {}, {}
    for s in (0.5, 1.0, 2.0):
        r = wm.embed(img, demo_key, PAYLOAD, strength=s)
        assert r.detectable == (True,)
        psnr[s] = _psnr(img, r.images, 255)
        x = torch.from_numpy(np.ascontiguousarray(r.images)).permute(2, 0, 1)[None].float() / 255
        p_jpeg[s] = wm.detect(jpeg(x, 0.5)[0], demo_key, payload=PAYLOAD).p_value  # JPEG q50
    # the residual's RMS scales with strength (clipping aside): ~6 dB per halving
    assert 5.0 < psnr[0.5] - psnr[1.0] < 7.0 and 5.0 < psnr[1.0] - psnr[2.0] < 7.0
    assert p_jpeg[2.0] <= p_jpeg[1.0] <= p_jpeg[0.5]
    weak = wm.embed(img, demo_key, PAYLOAD, strength=0.5).images
    st = wm.strip(weak, demo_key, payload=PAYLOAD)
    assert st.removed == (True,) and wm.detect(st.images, demo_key, payload=PAYLOAD).p_value > 0.01
    for bad in (0, -1, 2.5, float("nan"), True):
        with pytest.raises(ValueError, match="strength must be a number in"):
            wm.embed(img, demo_key, PAYLOAD, strength=bad)


@pytest.mark.parametrize("band_pixels", [1, 9000, 50000])
def test_banded_embedding_equals_whole_image(wm, photos, demo_key, band_pixels):
    """Row bands with their halo give the whole image's mask and RMS: the same marked image to
    float32 rounding, bands of any height (down to 2 halos) and any phase of the tile."""
    from wmark.image import model as M

    x = torch.from_numpy(photos[0][:203, :250].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()
    signs, _, _ = wm._signs(PAYLOAD, demo_key, 1)
    with torch.no_grad():
        tile = wm.encoder(signs)
        whole = M.apply_residual(x, M.residual(wm.encoder, x, signs, wm.config.rms))
        banded = M.embed_banded(tile, x, wm.config.rms, band_pixels=band_pixels)
    assert (banded - whole).abs().max() < 1e-6
    assert (banded - x).abs().max() > 1e-3  # a residual was added


def test_large_images_are_marked_in_bands(wm, photos, demo_key, monkeypatch):
    """Above BAND_PIXELS embed goes through the bands, in place on its own float copy: the caller's
    array and tensor are untouched, the 8-bit output is the whole-image one, and it detects."""
    from wmark.image import model as M

    img = photos[1]
    ref = wm.embed(img, demo_key, PAYLOAD, verify=False).images
    monkeypatch.setattr(M, "BAND_PIXELS", 20000)
    before = img.copy()
    res = wm.embed(img, demo_key, PAYLOAD)
    assert np.array_equal(img, before)
    diff = np.abs(res.images.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert res.detectable == (True,)
    t = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1).contiguous()
    t0 = t.clone()
    out = wm.embed(t, demo_key, PAYLOAD, verify=False).images
    assert torch.equal(t, t0) and (out - t).abs().max() > 1e-3
    grey = wm.embed(img[..., 0], demo_key, PAYLOAD)
    assert grey.images.shape == img.shape[:2] and grey.detectable == (True,)


def test_strip_refuses_above_its_pixel_limit(wm, photos, demo_key, monkeypatch):
    from wmark.image import model as M

    marked = wm.embed(photos[2], demo_key, PAYLOAD, verify=False).images
    monkeypatch.setattr(M, "STRIP_MAX_PIXELS", 100_000)
    s = wm.strip(marked, demo_key)
    r = s.results[0]
    assert not r.changed and "too large to strip" in r.reason and r.p_before < 1e-3
    assert np.array_equal(s.images, marked)
