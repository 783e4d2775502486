"""One test per row of the detection table (wmark.image.model.HYPOTHESES), each on the transform the
hypothesis exists for: the full search detects with that hypothesis winning, and the search without it
does worse (misses, or a larger p-value)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

PAYLOAD = "0102030405ff"


def _attack(name: str, s: float, seed: int, img: np.ndarray) -> np.ndarray:
    from wmark.attacks import get_attack

    x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255
    y = get_attack(name)(x, s, torch.Generator().manual_seed(seed))
    return (y[0].permute(1, 2, 0) * 255).round().byte().numpy()


def _without(name: str) -> tuple[str, ...]:
    from wmark.image.model import HYPOTHESES

    return tuple(h.name for h in HYPOTHESES if h.name != name)


def _check(wm, key, y, bits, name, payload=None, min_acc=0.8, worse=True):
    """The full search detects ``y`` with ``name`` winning; without ``name`` it does worse (where
    ``worse``)."""
    d = wm.detect(y, key, payload=payload)
    assert d.detected and d.hypothesis == name, (d.hypothesis, d.p_value, d.tried)
    if payload is None:
        assert d.payload_hex == PAYLOAD
    assert (d.bits == bits).mean() >= min_acc
    assert d.n_hypotheses == len(_without(name)) + 1
    rest = wm.detect(y, key, payload=payload, hypotheses=_without(name))
    assert rest.hypothesis != name and name not in rest.tried
    assert (not worse or not rest.detected or rest.p_value > d.p_value * (1 + 1e-9)
            or (rest.bits == bits).mean() < (d.bits == bits).mean())
    return d, rest


def test_origin_reads_a_clean_image_whose_energy_shift_is_wrong(wm, shared_data, demo_key):
    """A freshly marked photo (no payload: the default codeword) whose largest logit energy is not at
    its tile origin: read at the origin it detects; the energy's shift alone misses it."""
    from PIL import Image

    from wmark.image.model import _Search, decode_view, luma

    img = np.asarray(Image.open(shared_data / "train" / "bsds_87065.jpg").convert("RGB"))
    emb = wm.embed(img, demo_key)
    x = torch.from_numpy(emb.images.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        s = _Search(wm, decode_view(luma(x)), 0)
    assert s.peak[0] != 0  # the energy points elsewhere
    assert (((s.raw[0, :, 0] > 0).numpy()) == emb.bits.astype(bool)).mean() >= 0.8  # the origin reads it
    d = wm.detect(emb.images, demo_key)
    assert d.detected and d.hypothesis == "origin" and d.payload == bytes(6) and d.tried[0] == "origin"
    assert not wm.detect(emb.images, demo_key, hypotheses=("shift",)).detected
    assert emb.detectable == (True,)


def test_shift_reads_an_even_crop(wm, photos, demo_key):
    emb = wm.embed(photos[3], demo_key, PAYLOAD)
    y = emb.images[10:250, 20:320]  # 5 / 10 working px: the origin is lost, the decoder is shift-invariant
    _check(wm, demo_key, y, emb.bits, "shift", min_acc=0.97, worse=False)  # the denoised read finds it too
    assert not wm.detect(y, demo_key, hypotheses=("origin",)).detected


def test_phase_reads_an_odd_crop(wm, photos, demo_key):
    emb = wm.embed(photos[3], demo_key, PAYLOAD)
    y = emb.images[11:251, 21:321]  # half a working pixel off the 2x2 grid
    d, rest = _check(wm, demo_key, y, emb.bits, "phase", min_acc=0.97)
    assert (d.bits == emb.bits).mean() > (rest.bits == emb.bits).mean()


@pytest.mark.parametrize("kind", ["rotate10", "downscale0.75"])
def test_geometry_reads_rotation_and_downscale(wm, photos, demo_key, kind):
    from PIL import Image

    emb = wm.embed(photos[3][:256, :320], demo_key, PAYLOAD, verify=False)
    pil = Image.fromarray(emb.images)
    if kind == "rotate10":
        y = np.asarray(pil.rotate(10, resample=Image.BILINEAR))
    else:
        y = np.asarray(pil.resize((round(pil.width * 0.75), round(pil.height * 0.75)), Image.LANCZOS))
    _check(wm, demo_key, y, emb.bits, "geometry", min_acc=0.95)
    assert not wm.detect(y, demo_key, search=False).detected


def test_mirror_reads_a_flip(wm, photos, demo_key):
    emb = wm.embed(photos[0][:256, :320], demo_key, PAYLOAD, verify=False)
    y = emb.images[:, ::-1].copy()
    _check(wm, demo_key, y, emb.bits, "mirror", min_acc=0.95)
    assert not wm.detect(y, demo_key, search=False).detected


def test_denoised_reads_noise(wm, photos, demo_key):
    emb = wm.embed(photos[0], demo_key, PAYLOAD)
    y = _attack("noise", 0.5, 0, emb.images)
    _check(wm, demo_key, y, emb.bits, "denoised")
    from wmark.image.model import NOISE_MIN, noise_level

    clean = torch.from_numpy(emb.images.copy()).permute(2, 0, 1)[None].float().mean(1, keepdim=True) / 255
    assert float(noise_level(clean)[0]) < NOISE_MIN  # a clean photo: the low-passed reads are not made
    assert "denoised" not in wm.detect(emb.images, demo_key).tried


def test_lowpass_1_6_reads_heavy_noise(wm, photos, demo_key):
    emb = wm.embed(photos[0], demo_key, PAYLOAD)
    y = _attack("noise", 0.7, 0, emb.images)
    _check(wm, demo_key, y, emb.bits, "lowpass-1.6", min_acc=0.75)


def test_lowpass_0_8_reads_blur_noise_jpeg(wm, photos, demo_key):
    emb = wm.embed(photos[1], demo_key, PAYLOAD)
    y = _attack("degradation", 0.25, 1, emb.images)  # blur 0.5 px, noise, JPEG 70
    _check(wm, demo_key, y, emb.bits, "lowpass-0.8")


def test_known_payload_finds_its_own_alignment_under_noise(wm, photos, demo_key):
    """Heavy blur + noise + JPEG after a crop (origin lost): the key-blind energy picks a wrong shift,
    the known payload's codeword finds its own (x S) and detects; the bits reported are that shift's."""
    emb = wm.embed(photos[1], demo_key, PAYLOAD)
    y = _attack("degradation", 0.4, 0, emb.images)[10:, 20:]
    blind = wm.detect(y, demo_key, search=False)
    assert not blind.detected
    d = wm.detect(y, demo_key, payload=PAYLOAD, search=False)
    assert d.detected and d.p_value < 1e-6 and (d.bits == emb.bits).mean() >= 0.75
    no_align = wm.detect(y, demo_key, payload=PAYLOAD, hypotheses=("origin",))  # origin: no shift search
    assert no_align.p_value > d.p_value
