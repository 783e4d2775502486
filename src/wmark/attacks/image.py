"""Image attacks: ``f(images [B, C, H, W] in [0, 1], strength in [0, 1], generator) -> [B, C, H', W']``.

Every attack maps its strength ``s`` onto one natural parameter with a small pure function (the same
one :data:`IMAGE_ATTACKS` lists), keeps dtype and device, and returns values in [0, 1]. Colour
attacks leave 1-channel images unchanged. Randomness only comes from the ``generator`` argument
(``None``: torch's global generator), so a seeded generator gives identical results.

Strength mappings (``s`` in [0, 1]):

==============  ===========================================================================
jpeg, webp      quality = round(90 - 80 s) through the real PIL codec; s = 0 is still q=90 (not identity)
resize          scale = 1 - 0.75 s per side, bilinear (antialiased) down then back up
crop_center     kept area = 1 - 0.75 s (side factor sqrt(area)), output is smaller
crop_random     same area, per-image random position (nested in s for a fixed generator)
rotate          angle = 45 s degrees counter-clockwise, same size, black corners
hflip           flip when s > 0
blur            Gaussian sigma = 4 s px, kernel 2 ceil(3 sigma) + 1, replicate border
noise           additive Gaussian sigma = 0.2 s, clipped
brightness      x * (1 + s)          (factor 1 -> 2)
contrast        mean + (1 + s)(x - mean)  (factor 1 -> 2, mean gray level per image)
saturation      factor 1 - s (s = 1: grayscale)
hue             hue rotation of 90 s degrees (pi/2 s rad)
sharpen         unsharp mask x + 2 s (x - blur_1px(x))
erase           one gray (0.5) rectangle of area fraction 0.25 s, image aspect, random position
purify          Gaussian noise sigma = 0.1 s, then wavelet denoising (scikit-image, BayesShrink)
geometric       rotate -> crop_random -> erase, all at s
photometric     brightness -> contrast -> saturation -> hue, all at s
degradation     blur -> noise -> jpeg, all at s
all             geometric -> photometric -> degradation
regen_ae        encode-decode through the shipped autoencoder, blended: x + s (AE(x) - x)
pgd             white-box L-inf PGD against a decoder, eps = 8/255 * s (see :mod:`wmark.attacks.pgd`)
==============  ===========================================================================
"""
from __future__ import annotations

import io
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from wmark.assets import luma
from wmark.attacks.spec import AttackSpec

Gen = torch.Generator | None
Attack = Callable[..., torch.Tensor]


def _check(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError("images must be a float tensor [B, C, H, W] in [0, 1]")
    return x


def _rand(shape: tuple[int, ...], generator: Gen, like: torch.Tensor) -> torch.Tensor:
    """Uniforms drawn on the CPU (same numbers on every device), moved to ``like``'s device."""
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(like.device)


def _randn(shape: tuple[int, ...], generator: Gen, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


# -- strength -> parameter (one place each) ---------------------------------------------------------
def quality(s: float) -> int:
    """Codec quality: 90 at s=0 down to 10 at s=1."""
    return int(round(90 - 80 * s))


def resize_scale(s: float) -> float:
    return 1.0 - 0.75 * s


def crop_area(s: float) -> float:
    return 1.0 - 0.75 * s


def rotate_degrees(s: float) -> float:
    return 45.0 * s


def flip_on(s: float) -> bool:
    return s > 0


def blur_sigma(s: float) -> float:
    return 4.0 * s


def noise_sigma(s: float) -> float:
    return 0.2 * s


def brightness_factor(s: float) -> float:
    return 1.0 + s


def contrast_factor(s: float) -> float:
    return 1.0 + s


def saturation_factor(s: float) -> float:
    return 1.0 - s


def hue_radians(s: float) -> float:
    return 0.5 * math.pi * s


def sharpen_amount(s: float) -> float:
    return 2.0 * s


def erase_area(s: float) -> float:
    return 0.25 * s


def purify_sigma(s: float) -> float:
    return 0.1 * s


def pgd_eps(s: float) -> float:
    return 8.0 / 255.0 * s


def regen_blend(s: float) -> float:
    return s


# -- codecs (real PIL encoders) --------------------------------------------------------------------
def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """[C, H, W] float -> [H, W] or [H, W, C] uint8."""
    a = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)


def _from_uint8(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.array(a, copy=True)).to(like.device, like.dtype) / 255.0


def _codec(fmt: str, x: torch.Tensor, q: int) -> torch.Tensor:
    from PIL import Image

    out = []
    for img in _check(x):
        if img.shape[0] not in (1, 3):
            raise ValueError(f"{fmt} needs 1 or 3 channels, got {img.shape[0]}")
        buf = io.BytesIO()
        Image.fromarray(_to_uint8(img)).save(buf, format=fmt, quality=q)
        buf.seek(0)
        with Image.open(buf) as dec:
            dec = dec.convert("L" if img.shape[0] == 1 else "RGB")
            out.append(_from_uint8(np.asarray(dec), img))
    return torch.stack(out)


def jpeg(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """JPEG through PIL at quality :func:`quality` (s). [B, C, H, W] -> same shape, 8-bit values."""
    return _codec("JPEG", x, quality(s))


def webp(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Lossy WebP through PIL at quality :func:`quality` (s). [B, C, H, W] -> same shape."""
    return _codec("WEBP", x, quality(s))


# -- geometry ---------------------------------------------------------------------------------------
def resize(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Down-scale by :func:`resize_scale` (s) per side and back up (bilinear). Same shape."""
    h, w = _check(x).shape[-2:]
    k = resize_scale(s)
    if k >= 1.0:
        return x.clone()
    small = F.interpolate(x, size=(max(1, round(h * k)), max(1, round(w * k))), mode="bilinear",
                          align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def _crop_size(h: int, w: int, s: float) -> tuple[int, int]:
    r = math.sqrt(crop_area(s))
    return max(1, round(h * r)), max(1, round(w * r))


def crop_center(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Central crop keeping area :func:`crop_area` (s). [B, C, H, W] -> [B, C, h, w]."""
    h, w = _check(x).shape[-2:]
    ch, cw = _crop_size(h, w, s)
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw].clone()


def _nested_offsets(u: torch.Tensor, full: int, part: int) -> list[int]:
    """Offsets floor(u (full - part)): for a fixed u, the window grows around itself as part grows."""
    return [int(math.floor(float(v) * (full - part))) for v in u]


def crop_random(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Crop of area :func:`crop_area` (s) at a random position per image. -> [B, C, h, w]."""
    b, _, h, w = _check(x).shape
    ch, cw = _crop_size(h, w, s)
    u = _rand((2, b), generator, torch.empty(0))
    tops, lefts = _nested_offsets(u[0], h, ch), _nested_offsets(u[1], w, cw)
    return torch.stack([x[i, :, t:t + ch, l:l + cw] for i, (t, l) in enumerate(zip(tops, lefts))])


def rotate(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Rotate by :func:`rotate_degrees` (s) about the centre (bilinear, black corners). Same shape."""
    from kornia.geometry.transform import rotate as _rot

    deg = rotate_degrees(s)
    if deg == 0:
        return _check(x).clone()
    angle = torch.full((x.shape[0],), deg, dtype=x.dtype, device=x.device)
    return _rot(_check(x), angle, mode="bilinear", padding_mode="zeros", align_corners=True).clamp(0, 1)


def hflip(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Horizontal flip when s > 0 (:func:`flip_on`). Same shape."""
    return _check(x).flip(-1) if flip_on(s) else x.clone()


def erase(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Fill one rectangle (area fraction :func:`erase_area` (s), the image's aspect) with gray 0.5.

    Positions are drawn per image; for a fixed generator the rectangles are nested in s. Same shape.
    """
    b, _, h, w = _check(x).shape
    a = erase_area(s)
    u = _rand((2, b), generator, torch.empty(0))
    out = x.clone()
    if a <= 0:
        return out
    eh, ew = max(1, round(h * math.sqrt(a))), max(1, round(w * math.sqrt(a)))
    for i, (t, l) in enumerate(zip(_nested_offsets(u[0], h, eh), _nested_offsets(u[1], w, ew))):
        out[i, :, t:t + eh, l:l + ew] = 0.5
    return out


# -- filtering and noise ----------------------------------------------------------------------------
def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from wmark.image.nets import gaussian_blur

    return gaussian_blur(x, sigma, "replicate")


def blur(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Gaussian blur with sigma :func:`blur_sigma` (s) px. Same shape."""
    sigma = blur_sigma(s)
    return _check(x).clone() if sigma <= 0 else _gauss(_check(x), sigma).clamp(0, 1)


def noise(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Add Gaussian noise with sigma :func:`noise_sigma` (s), clipped to [0, 1]. Same shape."""
    z = _randn(tuple(_check(x).shape), generator, x)
    return (x + noise_sigma(s) * z).clamp(0, 1)


def sharpen(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Unsharp mask ``x + a (x - blur_1(x))`` with a = :func:`sharpen_amount` (s). Same shape."""
    a = sharpen_amount(s)
    return _check(x).clone() if a <= 0 else (_check(x) + a * (x - _gauss(x, 1.0))).clamp(0, 1)


# -- colour -----------------------------------------------------------------------------------------
def brightness(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Multiply by :func:`brightness_factor` (s) (1 -> 2), clipped. Same shape."""
    return (_check(x) * brightness_factor(s)).clamp(0, 1)


def contrast(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Scale deviations from the image's mean gray by :func:`contrast_factor` (s). Same shape."""
    m = luma(_check(x)).mean(dim=(1, 2, 3), keepdim=True)
    return (m + contrast_factor(s) * (x - m)).clamp(0, 1)


def saturation(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Blend towards grayscale: factor :func:`saturation_factor` (s) (1 -> 0). Same shape."""
    if _check(x).shape[1] != 3:
        return x.clone()
    g = luma(x)
    return (g + saturation_factor(s) * (x - g)).clamp(0, 1)


def hue(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Rotate hue by :func:`hue_radians` (s) (kornia HSV). Same shape."""
    from kornia.enhance import adjust_hue

    r = hue_radians(s)
    if _check(x).shape[1] != 3 or r == 0:
        return x.clone()
    return adjust_hue(x, r).clamp(0, 1)


# -- purification (noise + classical denoiser) ------------------------------------------------------
def purify(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
    """Gaussian noise (sigma :func:`purify_sigma` (s)) then scikit-image wavelet denoising. Same shape."""
    sigma = purify_sigma(s)
    if sigma <= 0:
        return _check(x).clone()
    try:
        from skimage.restoration import denoise_wavelet
    except ImportError:  # pragma: no cover - depends on the environment
        raise ValueError("attack 'purify' needs scikit-image (pip install scikit-image)") from None
    y = (x + sigma * _randn(tuple(x.shape), generator, x)).clamp(0, 1)
    out = []
    for img in y:
        a = img.detach().double().cpu().numpy().transpose(1, 2, 0)
        d = denoise_wavelet(a, sigma=sigma, channel_axis=-1, convert2ycbcr=a.shape[-1] == 3,
                            method="BayesShrink", mode="soft", rescale_sigma=True)
        out.append(torch.from_numpy(np.ascontiguousarray(d.transpose(2, 0, 1))))
    return torch.stack(out).to(x.device, x.dtype).clamp(0, 1)


# -- hooks that take a model ------------------------------------------------------------------------
def regen_ae(x: torch.Tensor, s: float, generator: Gen = None, *, autoencoder=None) -> torch.Tensor:
    """Regeneration: ``x + s (AE(x) - x)`` through ``autoencoder`` (default: the shipped one). Same shape."""
    from wmark.attacks.regen import load_autoencoder

    ae = autoencoder if autoencoder is not None else load_autoencoder()
    b = regen_blend(s)
    if b <= 0:
        return _check(x).clone()
    with torch.no_grad():
        y = ae(_check(x)).clamp(0, 1)
    return (x + b * (y - x)).clamp(0, 1)


def pgd(x: torch.Tensor, s: float, generator: Gen = None, *, decoder=None, bits=None, **kw) -> torch.Tensor:
    """White-box L-inf PGD (eps :func:`pgd_eps` (s)) pushing ``decoder(x)`` away from ``bits``."""
    from wmark.attacks.pgd import pgd_attack

    return pgd_attack(_check(x), decoder, bits, pgd_eps(s), generator=generator, **kw)


# -- combinations -----------------------------------------------------------------------------------
def chain(*names: str) -> Attack:
    """An attack applying the named registry attacks in order, all at the same strength."""

    def run(x: torch.Tensor, s: float, generator: Gen = None) -> torch.Tensor:
        for n in names:
            x = IMAGE_ATTACKS[n].fn(x, s, generator)
        return x

    run.__doc__ = f"{' -> '.join(names)}, all at strength s."
    return run


COMBOS: dict[str, tuple[str, ...]] = {
    "geometric": ("rotate", "crop_random", "erase"),
    "photometric": ("brightness", "contrast", "saturation", "hue"),
    "degradation": ("blur", "noise", "jpeg"),
}
COMBOS["all"] = COMBOS["geometric"] + COMBOS["photometric"] + COMBOS["degradation"]


def _spec(name: str, fn: Attack, param: str, mapping: Callable[[float], object], doc: str, **kw) -> AttackSpec:
    return AttackSpec(name, fn, param, mapping, doc, kind="image", summary=(fn.__doc__ or "").split("\n")[0], **kw)


_BASE: tuple[AttackSpec, ...] = (
    _spec("none", lambda x, s, g=None: _check(x).clone(), "-", lambda s: None, "no attack (reference row)"),
    _spec("jpeg", jpeg, "quality", quality, "round(90 - 80 s): 90 -> 10 (s=0 is still JPEG q90)",
          identity_at_zero=False),
    _spec("webp", webp, "quality", quality, "round(90 - 80 s): 90 -> 10 (s=0 is still WebP q90)",
          identity_at_zero=False),
    _spec("resize", resize, "scale", resize_scale, "1 - 0.75 s: 1 -> 0.25 per side, down then up",
          geometric=True),
    _spec("crop_center", crop_center, "area", crop_area, "1 - 0.75 s: 1 -> 0.25 kept, centred", geometric=True),
    _spec("crop_random", crop_random, "area", crop_area, "1 - 0.75 s: 1 -> 0.25 kept, random position",
          geometric=True),
    _spec("rotate", rotate, "degrees", rotate_degrees, "45 s: 0 -> 45 deg", geometric=True),
    _spec("hflip", hflip, "flip", flip_on, "s > 0", geometric=True),
    _spec("blur", blur, "sigma", blur_sigma, "4 s: 0 -> 4 px Gaussian"),
    _spec("noise", noise, "sigma", noise_sigma, "0.2 s: 0 -> 0.2 Gaussian"),
    _spec("brightness", brightness, "factor", brightness_factor, "1 + s: 1 -> 2 (multiplicative)"),
    _spec("contrast", contrast, "factor", contrast_factor, "1 + s: 1 -> 2 around the mean gray"),
    _spec("saturation", saturation, "factor", saturation_factor, "1 - s: 1 -> 0 (grayscale)"),
    _spec("hue", hue, "radians", hue_radians, "pi/2 s: 0 -> 90 deg hue rotation"),
    _spec("sharpen", sharpen, "amount", sharpen_amount, "2 s: 0 -> 2 unsharp mask (sigma 1 px)"),
    _spec("erase", erase, "area", erase_area, "0.25 s: 0 -> 25% gray rectangle"),
    _spec("purify", purify, "sigma", purify_sigma, "0.1 s: noise 0 -> 0.1, then wavelet denoising"),
    _spec("regen_ae", regen_ae, "blend", regen_blend, "s: x + s (AE(x) - x), shipped autoencoder"),
    _spec("pgd", pgd, "eps", pgd_eps, "8/255 s: L-inf budget 0 -> 8/255 (white-box)",
          needs=("decoder", "bits")),
)

#: name -> :class:`AttackSpec`, image attacks (combinations included)
IMAGE_ATTACKS: dict[str, AttackSpec] = {a.name: a for a in _BASE}
IMAGE_ATTACKS.update({
    name: AttackSpec(
        name, chain(*parts), "strength", lambda s: s, " -> ".join(parts) + ", each at s",
        geometric=any(IMAGE_ATTACKS[p].geometric for p in parts),
        identity_at_zero=all(IMAGE_ATTACKS[p].identity_at_zero for p in parts),
        kind="image", summary=f"combined: {', '.join(parts)}")
    for name, parts in COMBOS.items()
})
