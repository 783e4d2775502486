"""Strip after the image went through the wild: crops at odd offsets, resizing; never worse, says why."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from wmark.keys import Key  # noqa: E402

PAYLOAD = "0102030405ff"


@pytest.fixture(scope="module")
def photo(shared_data):
    """One training photo (never Kodak), uint8 [H, W, 3]."""
    from PIL import Image

    path = sorted((shared_data / "train").glob("bsds_*.jpg"))[0]
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def marked(wm, photo, demo_key):
    return wm.embed(photo, demo_key, PAYLOAD).images


def _psnr(a, b):
    from wmark.image.quality import psnr

    return psnr(a, b)


def _resize(a: np.ndarray, f: float) -> np.ndarray:
    from PIL import Image

    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((round(w * f), round(h * f)), Image.LANCZOS))


def test_strip_after_odd_crop_removes_and_improves(wm, photo, marked, demo_key):
    crop = (slice(37, 37 + 270), slice(51, 51 + 400))
    tc, tm = photo[crop], marked[crop]
    assert wm.detect(tm, demo_key).detected
    res = wm.strip(tm, demo_key)
    r = res.results[0]
    assert r.changed and r.reason == "" and r.p_after > r.p_before
    assert not wm.detect(res.images, demo_key).detected
    assert _psnr(tc, res.images) >= _psnr(tc, tm) + 2.0
    assert r.geometry is not None and abs(r.geometry.scale - 1) < 1e-6


def test_strip_after_resize_removes(wm, photo, marked, demo_key):
    tc, tm = _resize(photo, 0.75), _resize(marked, 0.75)
    res = wm.strip(tm, demo_key)
    r = res.results[0]
    assert r.changed and r.hypothesis == "geometry" and r.method == "warped"
    assert abs(r.geometry.scale - 0.75) < 0.005 and abs(r.geometry.angle) < 0.2
    assert not wm.detect(res.images, demo_key).detected
    assert wm.detect(res.images, demo_key, payload=PAYLOAD).p_value >= 0.01
    assert _psnr(tc, res.images) > _psnr(tc, tm) + 2.0


def test_strip_of_an_attenuated_mark_imprints_no_negative(wm, photo, marked, demo_key):
    """The mark at 60% of its amplitude (what resampling and recompression leave), in place: the
    exact inverse subtracts all of it and leaves the codeword negated; strip subtracts the amplitude
    that cancels it, so the output carries neither the mark nor its negative."""
    from wmark.stats import binom_sf

    cover = photo.astype(np.float64)
    weak = np.clip(np.round(cover + 0.6 * (marked.astype(np.float64) - cover)), 0, 255).astype(np.uint8)
    from wmark.image.model import strip_residual
    from wmark.image.nets import luma

    x = torch.from_numpy(weak).permute(2, 0, 1)[None].float() / 255
    signs, codeword, _ = wm._signs(bytes.fromhex(PAYLOAD), demo_key, 1)
    full = (strip_residual(wm.encoder, x, signs[:1], wm.config.rms, 6) * 255).round() / 255
    disagree = int(((wm._origin_logits(full) > 0) != (np.asarray(codeword) > 0)).sum())
    assert binom_sf(disagree, len(codeword), 0.5) < 0.01  # the exact inverse leaves the codeword negated
    res = wm.strip(weak, demo_key, payload=PAYLOAD)
    r = res.results[0]
    assert r.changed and r.method.startswith("cancelled"), r.method
    out = torch.from_numpy(np.asarray(res.images)).permute(2, 0, 1)[None].float() / 255
    d = wm.detect(out, demo_key, payload=PAYLOAD, hypotheses=("origin",))[0]
    assert binom_sf(d.n_bits - d.agree, d.n_bits, 0.5) >= 0.01 and d.p_value >= 0.01  # neither sign is left
    assert float(luma(out).sub(luma(x)).pow(2).mean()) < float(luma(full).sub(luma(x)).pow(2).mean())


def test_unmarked_comes_back_identical(wm, photo, demo_key):
    res = wm.strip(photo, demo_key)
    r = res.results[0]
    assert res.removed == (False,) and not r.changed and r.reason.startswith("no mark found")
    assert res.images.dtype == photo.dtype and np.array_equal(res.images, photo)
    assert r.p_after == r.p_before and r.geometry is None


def test_wrong_key_leaves_marked_image_unchanged(wm, marked):
    res = wm.strip(marked, Key.from_passphrase("someone else"))
    assert not res.results[0].changed and res.results[0].reason
    assert np.array_equal(res.images, marked)


def test_result_fields_and_json_round_trip(wm, marked, demo_key):
    from wmark.image.model import Geometry, Stripped, StripResult

    res = wm.strip([marked, marked[5:, 3:]], demo_key)
    assert isinstance(res, Stripped) and isinstance(res.images, list) and len(res.results) == 2
    for r, img in zip(res.results, res.images):
        assert isinstance(r, StripResult) and isinstance(r.changed, bool) and isinstance(r.reason, str)
        assert 0 <= r.p_before <= 1 and 0 <= r.p_after <= 1 and isinstance(r.hypothesis, str)
        assert isinstance(r.geometry, Geometry) and np.asarray(r.geometry.affine).shape == (2, 3)
        assert r.payload == bytes.fromhex(PAYLOAD) and r.changed == (r.reason == "")
        d = json.loads(json.dumps(r.to_json()))
        assert StripResult.from_json(d) == r
        assert img.shape[2] == 3 and img.dtype == np.uint8
    assert res.to_json() == [r.to_json() for r in res.results]
    assert res.removed == tuple(r.changed for r in res.results)
    assert res.results[0].method == "fixed-point"  # the image as marked: the exact inverse
