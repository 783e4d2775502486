"""Image attacks: strength mappings, identity at 0, monotone distortion, determinism, shapes, range."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from wmark.attacks import get_attack, registry

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SKIP = {"pgd"}  # needs a decoder: tested in test_pgd.py


def _names() -> list[str]:
    return [n for n in registry("image") if n not in SKIP]


@pytest.fixture(scope="module")
def natural(shared_data) -> torch.Tensor:
    """Two 96x128 crops of training photos, [2, 3, 96, 128] in [0, 1]."""
    import numpy as np
    from PIL import Image

    paths = sorted((shared_data / "train").glob("bsds_*.jpg"))[:2]
    out = []
    for p in paths:
        with Image.open(p) as im:
            a = np.asarray(im.convert("RGB"), dtype=np.float32)[100:196, 150:278] / 255.0
        out.append(torch.from_numpy(a.transpose(2, 0, 1).copy()))
    return torch.stack(out)


def smooth(b: int = 2, c: int = 3, h: int = 72, w: int = 96) -> torch.Tensor:
    """A synthetic smooth colour image [b, c, h, w] with values in (0, 1)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    chans = [0.5 + 0.35 * torch.sin(6 * xx + 2 * k + i) * torch.cos(4 * yy - k) for i in range(b) for k in range(c)]
    return torch.stack(chans).view(b, c, h, w)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_import_is_light():
    code = "import sys, wmark.attacks, wmark.cli.attack; print([m for m in ('torch', 'PIL', 'kornia') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_entries_are_frozen_and_documented():
    import dataclasses

    reg = registry("image")
    for required in ("jpeg", "webp", "resize", "crop_center", "crop_random", "rotate", "hflip", "blur", "noise",
                     "brightness", "contrast", "saturation", "hue", "sharpen", "erase", "purify", "regen_ae", "pgd",
                     "geometric", "photometric", "degradation", "all"):
        assert required in reg
    for name, spec in reg.items():
        assert spec.name == name and spec.kind == "image" and spec.mapping_doc
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "x"  # type: ignore[misc]
        spec.describe()


@pytest.mark.parametrize("name,s,value", [
    ("jpeg", 0.0, 90), ("jpeg", 0.5, 50), ("jpeg", 1.0, 10), ("webp", 1.0, 10),
    ("resize", 0.0, 1.0), ("resize", 1.0, 0.25), ("crop_center", 1.0, 0.25), ("crop_random", 0.5, 0.625),
    ("rotate", 1.0, 45.0), ("hflip", 0.0, False), ("hflip", 0.1, True), ("blur", 1.0, 4.0),
    ("noise", 1.0, 0.2), ("brightness", 1.0, 2.0), ("contrast", 0.5, 1.5), ("saturation", 1.0, 0.0),
    ("erase", 1.0, 0.25), ("pgd", 1.0, 8 / 255), ("sharpen", 1.0, 2.0),
])
def test_strength_mapping(name, s, value):
    assert get_attack(name).param_value(s) == pytest.approx(value)


def test_bad_strength_and_unknown_name():
    x = smooth()
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength"):
            get_attack("blur")(x, bad)
    with pytest.raises(ValueError, match="unknown image attack"):
        get_attack("nope")
    with pytest.raises(ValueError, match="float tensor"):
        get_attack("blur")(torch.zeros(3, 8, 8), 0.5)


@pytest.mark.parametrize("name", _names())
def test_identity_at_zero(name):
    x = smooth()
    spec = get_attack(name)
    y = spec(x, 0.0, gen())
    if spec.identity_at_zero:
        assert y.shape == x.shape
        assert (y - x).abs().max() <= 1 / 255
    elif not spec.geometric:
        assert (y - x).abs().mean() < 0.02  # mildest setting (e.g. JPEG q90): close, not equal


@pytest.mark.parametrize("name", _names())
def test_shapes_dtype_range_determinism(name):
    x = smooth()
    spec = get_attack(name)
    for s in (0.3, 1.0):
        y1, y2 = spec(x, s, gen(7)), spec(x, s, gen(7))
        assert y1.dtype == x.dtype and y1.ndim == 4 and y1.shape[:2] == x.shape[:2]
        assert 0.0 <= float(y1.min()) and float(y1.max()) <= 1.0
        assert torch.equal(y1, y2)
        if not spec.geometric or name in ("rotate", "resize", "hflip"):
            assert y1.shape == x.shape


@pytest.mark.parametrize("name", _names())
def test_gray_images(name):
    x = smooth(c=1)
    y = get_attack(name)(x, 0.5, gen())
    assert y.shape[:2] == x.shape[:2] and 0 <= float(y.min()) and float(y.max()) <= 1


def _distortion(spec, x: torch.Tensor, s: float) -> float:
    y = spec(x, s, gen(3))
    if y.shape != x.shape:  # crops: the area lost
        return 1.0 - y.shape[-1] * y.shape[-2] / (x.shape[-1] * x.shape[-2])
    return float(((y - x) ** 2).mean())


@pytest.mark.parametrize("name", [n for n in _names() if n not in ("none", "hflip")])
def test_monotone_distortion_natural(name, natural):
    spec = get_attack(name)
    d = [_distortion(spec, natural, s) for s in STRENGTHS]
    assert d[-1] > d[0], d
    for a, b in zip(d, d[1:]):
        assert b >= a - 1e-6 * max(1.0, abs(a)), d


def test_hflip_and_crops():
    x = smooth()
    assert torch.equal(get_attack("hflip")(x, 1.0), x.flip(-1))
    y = get_attack("crop_center")(x, 1.0)
    assert y.shape[-2:] == (36, 48)
    assert torch.equal(y, x[..., 18:54, 24:72])
    r = get_attack("crop_random")(x, 1.0, gen(1))
    assert r.shape[-2:] == (36, 48)


def test_jpeg_is_real_codec_and_per_image():
    x = smooth()
    y = get_attack("jpeg")(x, 0.5)
    assert torch.allclose(y * 255, (y * 255).round(), atol=1e-3)  # 8-bit output
    assert torch.equal(get_attack("jpeg")(x[:1], 0.5), y[:1])  # no cross-talk in the batch


def test_noise_differs_across_seeds_and_images():
    x = smooth()
    a, b = get_attack("noise")(x, 0.5, gen(1)), get_attack("noise")(x, 0.5, gen(2))
    assert not torch.equal(a, b)
