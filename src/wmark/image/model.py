"""The image watermarker: training forward pass and inference ``embed`` / ``detect`` / ``strip``.

Functional core (pure, no hidden state): :func:`residual`, :func:`read_logits`, :func:`strip_residual`,
:func:`osd_decode`. :class:`ImageWatermarker` holds the networks, the keyed code (:mod:`wmark.codes`)
and settings, loads shipped weights and converts PIL / numpy / tensors. Shapes for the defaults
(n = 128 carried bits, 6-byte payload, tile t = 32 working px = 64 native px, S = t * t shifts)::

    embed   payload -> codeword bits [n] -> encoder tile [1, 1, 64, 64], repeated over the image,
            weighted by the perceptual mask, scaled to RMS ``rms`` -> residual [B, 1, H, W], added
            to every channel; the output is read back (``Embedded.detectable``)
    read    image [B, C, H, W] -> luminance view <= MAX_DECODE_SIDE -> prefilter features
            [B, 4, H/2, W/2] folded to [B, 4, t, t] -> logits at every cyclic shift [B, n, S]
            (minus the null bias)
    detect  the hypotheses of :data:`HYPOTHESES`, each one read and one test; p-value K x the
            winner's, K = len(HYPOTHESES)

**Detection** is this one procedure; :func:`hypothesis_table` prints its table. Each hypothesis of
:data:`HYPOTHESES` is a name, a *gate* and a *read*. The gate looks at the image and at the p-values
of the reads already tested, and says whether the hypothesis is worth its cost there (it decides
cost, never validity: see below; the low-passed reads wait for noise, a seen tile lattice or a trace
of the key in a cheaper read, so that unmarked images, most of any dataset, mostly pay for one
decoder pass); the read turns the image into logits at every cyclic shift [n, S] and picks one
shift without the key. Each read is tested into its own p-value p_h
(:meth:`ImageWatermarker.test_read`, a soft test: :func:`codeword_log_pvalue`). Payload unknown: x2 over the union bound over the 2**48 codewords for
the best one decoded (Reed-Solomon with erasures, or :func:`osd_decode`) and the tail against the
default payload's codeword. Payload known: its codeword's tail, and where the hypothesis searches
shifts, x2 with the codeword's own best shift (x S) where that detects. Hypotheses are tried in
table order; one is skipped once a read so far detects with at least its ``until`` fraction of bits
agreeing. Whatever the gates and that stopping rule decide, the p-value reported is
min(1, K p_winner) >= K min_h p_h, K = len(HYPOTHESES) however many were tried: Bonferroni over the
whole table, valid for any rule of which to try. The winner is the detecting read of smallest
p-value; where nothing detects, the ``fallback`` read (the denoised one, the most bits right under
noise) or else the first. Its bits, agreement, payload and p-value are the ones reported;
``Detection.hypothesis`` names it, ``Detection.tried`` lists what was read. Same-sized images are
read as batches (:data:`BATCH_PIXELS` per pass).
"""
from __future__ import annotations

import io as _io
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from wmark.codes import PayloadCode, bits_to_bytes, parse_payload
from wmark.image import io as imio
from wmark.image.nets import (Decoder, Encoder, apply_residual, bits_to_signs, fold, gaussian_blur, luma,
                              mask_halo, mask_window, perceptual_mask, resize, shape_residual, standardize,
                              tile_to)
from wmark.stats import binom_sf

DEFAULT_ALPHA = 1e-3


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """Detection result for one image.

    ``bits`` [n] carried hard bits of the winning read; ``confidence`` [n] per-bit confidence in
    [0, 1] (|2 sigmoid(logit) - 1|); ``payload`` the decoded payload (payload unknown: only where
    detected; None otherwise); ``p_value`` for "marked under this key" (K x the winning read's own,
    Bonferroni over the ``n_hypotheses`` of the table); ``detected`` = p_value < alpha; ``agree`` the
    winning read's bits agreeing with the codeword its test used; ``hypothesis`` the name of the
    winning hypothesis (:data:`HYPOTHESES`); ``tried`` the hypotheses read, in order."""

    detected: bool
    p_value: float
    payload: bytes | None
    bits: np.ndarray = field(repr=False)
    confidence: np.ndarray = field(repr=False)
    agree: int = 0
    n_bits: int = 0
    n_corrected: int = 0
    alpha: float = DEFAULT_ALPHA
    hypothesis: str = ""
    n_hypotheses: int = 1
    tried: tuple[str, ...] = ()

    @property
    def payload_hex(self) -> str | None:
        return None if self.payload is None else self.payload.hex()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the scalar fields (``payload`` as hex or None; not ``bits`` / ``confidence``)."""
        return {"detected": bool(self.detected), "p_value": float(self.p_value), "payload": self.payload_hex,
                "agree": int(self.agree), "n_bits": int(self.n_bits), "n_corrected": int(self.n_corrected),
                "alpha": float(self.alpha), "hypothesis": self.hypothesis, "n_hypotheses": int(self.n_hypotheses),
                "tried": list(self.tried)}


@dataclass(frozen=True)
class Embedded:
    """Marked images (same type and layout as the input) and the carried bits [n].

    ``detectable[i]``: the blind detector (payload unknown, ``DEFAULT_ALPHA``) finds image i's mark
    and its payload in the output as returned (after 8-bit rounding for 8-bit outputs);
    ``reasons[i]`` says why not where it does not (None where it does); ``p_values[i]`` that read's
    p-value. Empty tuples where ``embed(verify=False)``."""

    images: Any
    payload: bytes
    bits: np.ndarray = field(repr=False)
    detectable: tuple[bool, ...] = ()
    reasons: tuple[str | None, ...] = ()
    p_values: tuple[float, ...] = ()


@dataclass(frozen=True)
class StripResult:
    """What strip did to one image.

    ``changed``: the image was stripped (False: returned byte-identical, ``reason`` says why; ``reason``
    is "" where changed). ``p_before`` / ``p_after``: the payload's own test (the key holder's
    strongest; the blind detection's p where no payload was read) on the input / the output as
    returned (= ``p_before`` where unchanged; for a rejected attempt ``p_attempt`` holds what the
    attempt reached). ``hypothesis``: the winning row of :data:`HYPOTHESES`; ``geometry``: the map
    found from the image's pixels to the mark's tile (:class:`Geometry`; None where none was found).
    ``payload``: the payload whose residual was removed (None where not detected). ``gain``: the energy
    of the fitted residual over the largest energy at wrong alignments (the acceptance test, see
    :meth:`ImageWatermarker.strip`); ``removed_rms``: RMS (in [0, 1] units) of what was subtracted;
    ``method``: "fixed-point" (the image as marked: exact inverse), "fitted" (as marked, the mark
    scaled by recompression: the inverse's residual at the fitted amplitude), "cancelled" (as marked,
    where the exact inverse would leave the codeword negated: the residual at the amplitude that
    cancels it, where the mark is gone there too) or "warped" (the residual re-made in the image's
    own frame and fitted); a second pass appends its own ("fixed-point+warped")."""

    changed: bool
    reason: str
    p_before: float
    p_after: float
    hypothesis: str = ""
    geometry: "Geometry | None" = None
    payload: bytes | None = None
    gain: float = 0.0
    removed_rms: float = 0.0
    method: str = ""
    p_attempt: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (``payload`` as hex, ``geometry`` as a dict or None)."""
        return {"changed": bool(self.changed), "reason": self.reason, "p_before": float(self.p_before),
                "p_after": float(self.p_after), "hypothesis": self.hypothesis,
                "geometry": None if self.geometry is None else self.geometry.to_json(),
                "payload": None if self.payload is None else self.payload.hex(), "gain": float(self.gain),
                "removed_rms": float(self.removed_rms), "method": self.method,
                "p_attempt": None if self.p_attempt is None else float(self.p_attempt)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "StripResult":
        g = d.get("geometry")
        return cls(bool(d["changed"]), str(d["reason"]), float(d["p_before"]), float(d["p_after"]),
                   d.get("hypothesis", ""), None if g is None else Geometry.from_json(g),
                   None if d.get("payload") is None else bytes.fromhex(d["payload"]), float(d.get("gain", 0.0)),
                   float(d.get("removed_rms", 0.0)), d.get("method", ""),
                   None if d.get("p_attempt") is None else float(d["p_attempt"]))


@dataclass(frozen=True)
class Geometry:
    """The affine map from an image's pixel centres (x right, y down, native px) to the mark's tile
    coordinates (mod ``period``): ``affine`` ((a, b, tx), (c, d, ty)), q = A p + t. ``angle`` (degrees,
    counter-clockwise as kornia's rotate), ``scale`` (the image is ``scale`` times the mark's size) and
    ``offset`` (x, y) (where the image's top-left pixel lies in the tile, mod the period: a crop's
    offset) are read off it; ``flip``: mirrored left-right."""

    affine: tuple[tuple[float, float, float], tuple[float, float, float]]
    flip: bool = False
    period: int = 64

    @property
    def scale(self) -> float:
        (a, b, _), (c, d, _) = self.affine
        return 1.0 / math.sqrt(abs(a * d - b * c))

    @property
    def angle(self) -> float:
        (a, b, _), (c, d, _) = self.affine
        return math.degrees(math.atan2(-b if not self.flip else b, a if not self.flip else -a))

    @property
    def offset(self) -> tuple[float, float]:
        (_, _, tx), (_, _, ty) = self.affine
        return tx % self.period, ty % self.period

    def to_json(self) -> dict[str, Any]:
        return {"affine": [list(map(float, r)) for r in self.affine], "flip": bool(self.flip),
                "period": int(self.period), "angle": round(self.angle, 4), "scale": round(self.scale, 5),
                "offset": [round(v, 3) for v in self.offset]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Geometry":
        a = d["affine"]
        return cls((tuple(map(float, a[0])), tuple(map(float, a[1]))), bool(d.get("flip", False)),
                   int(d.get("period", 64)))


@dataclass(frozen=True)
class Stripped:
    """Images with the mark removed (same type and layout as the input, as :meth:`ImageWatermarker.embed`
    returns them) and one :class:`StripResult` per image in order (``results``). ``removed[i]`` =
    ``results[i].changed``; ``before`` the detections that drove each strip."""

    images: Any
    removed: tuple[bool, ...]
    before: tuple[Detection, ...] = field(repr=False)
    results: tuple[StripResult, ...] = ()

    def to_json(self) -> list[dict[str, Any]]:
        """One :meth:`StripResult.to_json` dict per image."""
        return [r.to_json() for r in self.results]


# -- functional core ---------------------------------------------------------------------------
def residual(encoder: nn.Module, x: torch.Tensor, signs: torch.Tensor, rms: float) -> torch.Tensor:
    """Cover x [B, C, H, W] and message signs [B, n] (or [1, n]) -> luminance residual [B, 1, H, W]."""
    tile = encoder(signs)
    if tile.shape[0] != x.shape[0]:
        tile = tile.expand(x.shape[0], -1, -1, -1)
    return shape_residual(tile, perceptual_mask(x), rms)


BAND_PIXELS = 1 << 22  # above this many pixels an image is marked in row bands of about this many


def embed_banded(tile: torch.Tensor, x: torch.Tensor, rms: float, out: torch.Tensor | None = None,
                 band_pixels: int = BAND_PIXELS) -> torch.Tensor:
    """x [1, C, H, W] plus the residual of ``tile`` [1, 1, P, P] (:func:`shape_residual` of
    :func:`perceptual_mask`, RMS ``rms``) -> [1, C, H, W] in ``out`` (a new tensor, or given: x itself
    may be), in memory bounded by the band, not by the image's float copies. Row bands of about
    ``band_pixels`` pixels: each band's mask is made from the band and :func:`mask_halo` rows either
    side with the whole image's window, so it equals the whole image's mask; a first pass keeps
    tile x mask per band and sums its squares (float64) for the RMS, a second writes x + r, clamped."""
    _, _, h, w = x.shape
    k = mask_window(h, w)
    halo = mask_halo(k)
    rows = max(2 * halo, band_pixels // w, 1)
    period = tile.shape[-1]
    bands, total = [], 0.0
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        a, b = max(0, r0 - halo), min(h, r1 + halo)
        m = perceptual_mask(x[..., a:b, :], k=k)[..., r0 - a:r1 - a, :]
        r = tile_to(torch.roll(tile, -(r0 % period), -2), (r1 - r0, w)).mul_(m)
        total += float(r.double().square().sum())
        bands.append((r0, r1, r))
    scale = rms / math.sqrt(total / (h * w) + 1e-12)
    out = torch.empty_like(x) if out is None else out
    for r0, r1, r in bands:
        apply_residual(x[..., r0:r1, :], r.mul_(scale), out[..., r0:r1, :])
    return out


def strip_residual(encoder: nn.Module, y: torch.Tensor, signs: torch.Tensor, rms: float,
                   iters: int = 6) -> torch.Tensor:
    """Remove the residual of ``signs`` from marked y [B, C, H, W]: fixed point x = y - r(x)."""
    x = y
    for _ in range(iters):
        x = (y - residual(encoder, x, signs, rms)).clamp(0, 1)
    return x


# -- strip in the image's own frame ---------------------------------------------------------------
STRIP_HIGHPASS = 15  # px: box high-pass of the fit (the mark's tile has little energy below it, photos much)
STRIP_ALIGN_HIGHPASS = 5  # px: box high-pass of the alignment (refine_affine)
STRIP_ALIGN_FLOOR = 0.5 / 255  # the least local RMS of that high-pass in the alignment's weights
STRIP_GAIN = 4.0  # fitted residual energy / largest energy at wrong alignments needed to strip (see strip;
# on bench/image_strip_wild.py the 12 images with gains 4.4-8.9 all improved, +0.6 to +13.5 dB)
STRIP_NULL_OFFSETS = ((21.0, 11.0), (43.0, 27.0), (9.0, 37.0), (33.0, 50.0), (50.0, 5.0), (27.0, 45.0))
STRIP_EXACT = 0.5  # |fitted amplitude - 1| up to which an image read as marked gets the exact inverse
# (recompression attenuates the residual's fine detail, not the part the detector reads: amplitude 1 removes it)
STRIP_MAX_RMS = 2.0  # x the embedding RMS: the most a strip may subtract
STRIP_REFINE_SIDE = 768  # px: the geometry is refined on a central crop of at most this side
STRIP_REFINE_ITERS = 15
STRIP_GONE = 0.01  # p-value after a strip below which it is run once more on its own output (STRIP_PASSES)
STRIP_PASSES = 2
STRIP_NEGATED = 0.01  # tail of the disagreeing bits below which a strip's output carries the mark negated
STRIP_MASK_ITERS = 3  # the perceptual mask re-made from the stripped estimate (as strip_residual does)
STRIP_MAX_PIXELS = 64_000_000  # larger marked images come back unchanged (strip: ~60 MB per MP, 16 MP in ~50 s)
STRIP_START_STEPS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # px: translations tried before the refinement


def _rotation(deg: float) -> np.ndarray:
    """kornia's counter-clockwise rotation by ``deg`` in (x right, y down) coordinates [2, 2]."""
    a = math.radians(deg)
    return np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])


def frame_affine(size: Sequence[int], shift: int, frame: "Frame", factor: int, tile: int) -> np.ndarray:
    """The map [2, 3] from pixel centres (x, y) of an image of ``size`` (H, W) to the mark's tile
    coordinates (mod ``factor * tile``) implied by a read through ``frame`` at cyclic ``shift``: the
    decoded view's offset, the flip, the rotation and resize undone (:func:`geometry_view`), the
    view's own decoded part, the pooling phase, then the shift (``factor`` native px per step)."""
    def aff(lin, t) -> np.ndarray:
        m = np.eye(3)
        m[:2, :2], m[:2, 2] = lin, t
        return m

    h, w = size[:2]
    v1 = (min(h, MAX_DECODE_SIDE), min(w, MAX_DECODE_SIDE))
    y0, x0 = view_offsets((h, w), v1)
    m = aff(np.eye(2), (-x0, -y0))
    h1, w1 = v1
    if frame.flip:
        m = aff(np.diag([-1.0, 1.0]), (w1 - 1, 0)) @ m
    if abs(frame.angle) > 1e-3:
        r, c = _rotation(-frame.angle), np.array([(w1 - 1) / 2, (h1 - 1) / 2])
        m = aff(r, c - r @ c) @ m
    h2, w2 = h1, w1
    if abs(frame.scale - 1.0) > 1e-3:
        h2, w2 = max(64, round(h1 / frame.scale)), max(64, round(w1 / frame.scale))
        f = np.array([w2 / w1, h2 / h1])
        m = aff(np.diag(f), 0.5 * f - 0.5) @ m
    y2, x2 = view_offsets((h2, w2), (min(h2, MAX_DECODE_SIDE), min(w2, MAX_DECODE_SIDE)))
    py, px = frame.phase
    sy, sx = divmod(int(shift), tile)
    m = aff(np.eye(2), (factor * sx - x2 - px, factor * sy - y2 - py)) @ m
    return m[:2]


def tile_field(tile: torch.Tensor, affine: torch.Tensor, size: Sequence[int],
               origin: Sequence[int] = (0, 0)) -> torch.Tensor:
    """The periodic tile [1, 1, P, P] as it lies in an image: value at pixel (x, y) = the tile at
    ``affine`` [2, 3] (x, y, 1) mod P (bicubic; differentiable in ``affine``) -> [1, 1, h, w] for
    ``size`` (h, w) pixels from ``origin`` (y, x)."""
    p = tile.shape[-1]
    dt = torch.float64
    ys = torch.arange(size[0], dtype=dt, device=tile.device) + origin[0]
    xs = torch.arange(size[1], dtype=dt, device=tile.device) + origin[1]
    a = affine.to(tile.device, dt)
    qx = a[0, 0] * xs[None] + a[0, 1] * ys[:, None] + a[0, 2]
    qy = a[1, 0] * xs[None] + a[1, 1] * ys[:, None] + a[1, 2]
    g = torch.stack([(torch.remainder(qx, p) + p) / (3 * p - 1) * 2 - 1,
                     (torch.remainder(qy, p) + p) / (3 * p - 1) * 2 - 1], -1)[None]
    return torch.nn.functional.grid_sample(tile.repeat(1, 1, 3, 3), g.to(tile.dtype), mode="bicubic",
                                           align_corners=True)


def strip_highpass(z: torch.Tensor, k: int = STRIP_HIGHPASS) -> torch.Tensor:
    """[B, C, H, W] minus its k x k box mean: the domain the strip's fit (``STRIP_HIGHPASS``) and its
    alignment (``STRIP_ALIGN_HIGHPASS``: photos' 1/f spectrum whitened more, so the peak is sharper)
    are made in."""
    from wmark.image.nets import box_mean

    return z - box_mean(z, k)


def refine_affine(yl: torch.Tensor, tile: torch.Tensor, mask: torch.Tensor, affine: np.ndarray,
                  linear: bool = True, iters: int = STRIP_REFINE_ITERS) -> np.ndarray:
    """Sub-pixel refinement of ``affine`` [2, 3] (from the detector's read: whole-pixel shift, scale
    and angle to its grid) by L-BFGS on the correlation coefficient of the high-passed luminance yl
    [1, 1, H, W] with the high-passed field (:func:`tile_field`) x ``mask``, weighted by the inverse local
    energy of the image's high-pass (generalised least squares: textures, where the photo's own detail
    swamps the mark, weigh little; unweighted, their chance correlation biases the peak by ~0.4 px), on a
    central crop of at
    most ``STRIP_REFINE_SIDE`` px: the translation (the best start within 1 px, then L-BFGS), then, where
    ``linear`` (the read undid a rotation or resize), all six parameters (a correction of 1 moves the
    crop's edge by 1 px). Reads without geometry keep their exact linear part."""
    h, w = yl.shape[-2:]
    ch, cw = min(h, STRIP_REFINE_SIDE), min(w, STRIP_REFINE_SIDE)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    from wmark.image.nets import box_mean

    target = strip_highpass(yl[..., y0:y0 + ch, x0:x0 + cw], STRIP_ALIGN_HIGHPASS).float()
    weight = 1.0 / (box_mean(target * target, STRIP_HIGHPASS) + STRIP_ALIGN_FLOOR ** 2)
    target = target * weight / (weight * target * target).mean().sqrt().clamp_min(1e-12)
    mk = mask[..., y0:y0 + ch, x0:x0 + cw].float()
    a0 = torch.as_tensor(affine, dtype=torch.float64)
    c = torch.tensor([x0 + (cw - 1) / 2, y0 + (ch - 1) / 2], dtype=torch.float64)
    half = torch.tensor([cw / 2, ch / 2], dtype=torch.float64)
    d = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    t32 = tile.float()  # the field in float32 (coordinates in float64)

    def build() -> torch.Tensor:
        lin = torch.stack([d[0:2], d[3:5]]) / half[None]
        t = torch.stack([d[2], d[5]]) - lin @ c
        return a0 + torch.cat([lin, t[:, None]], 1)


    def score() -> torch.Tensor:
        b = strip_highpass(tile_field(t32, build(), (ch, cw), (y0, x0)) * mk, STRIP_ALIGN_HIGHPASS)
        return (b * target).mean() / (weight * b * b).mean().sqrt().clamp_min(1e-12)

    with torch.no_grad():  # the read's shift is on a 2 px grid (its phase on 1 px): the best start within 1 px
        best, start = -math.inf, (0.0, 0.0)
        for ty in STRIP_START_STEPS:
            for tx in STRIP_START_STEPS:
                d[2], d[5] = tx, ty
                v = float(score())
                if v > best:
                    best, start = v, (tx, ty)
        d[2], d[5] = start
    free = torch.zeros(6, dtype=torch.float64)
    for which in ((2, 5), range(6)) if linear else ((2, 5),):
        free.zero_()
        free[list(which)] = 1.0
        opt = torch.optim.LBFGS([d], lr=1, max_iter=iters, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = -score()
            loss.backward()
            d.grad.mul_(free)
            return loss

        with torch.enable_grad():
            opt.step(closure)
    out = build().detach().numpy()
    return out if np.isfinite(out).all() else np.asarray(affine)


def fit_residual(yl: torch.Tensor, basis: torch.Tensor) -> tuple[float, float]:
    """Least-squares amplitude of ``basis`` [1, 1, H, W] in luminance yl [1, 1, H, W], both high-passed
    (:func:`strip_highpass`) -> (amplitude, energy of the fitted part, sum of squares)."""
    b, t = strip_highpass(basis).double(), strip_highpass(yl).double()
    bb = float((b * b).sum())
    if bb <= 0:
        return 0.0, 0.0
    bt = float((b * t).sum())
    return bt / bb, bt * bt / bb


MAX_DECODE_SIDE = 1536  # larger images are read through a view of this size (crops cost nothing: see nets)
VIEW_ALIGN = 64  # the view's offset is a multiple of the tile period, so an uncropped image keeps its origin


def view_offsets(size: Sequence[int], view: Sequence[int]) -> tuple[int, int]:
    """Top-left (y0, x0) of the decoded view of ``view`` (h, w) in an image of ``size`` (H, W): about
    centred, rounded down to a multiple of ``VIEW_ALIGN``."""
    y0, x0 = ((s - v) // 2 // VIEW_ALIGN * VIEW_ALIGN for s, v in zip(size[:2], view[:2]))
    return y0, x0


def decode_view(x: torch.Tensor) -> torch.Tensor:
    """[..., H, W] -> the part the decoder reads, at most MAX_DECODE_SIDE per side (:func:`view_offsets`)."""
    h, w = x.shape[-2:]
    ch, cw = min(h, MAX_DECODE_SIDE), min(w, MAX_DECODE_SIDE)
    y0, x0 = view_offsets((h, w), (ch, cw))
    return x[..., y0:y0 + ch, x0:x0 + cw]


def read_logits(decoder: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Image [B, C, H, W] (any size >= 64 px) -> bit logits [B, n] at the shift of largest energy
    (minus the null bias when given): the training / white-box read. Differentiable in x (the shift
    choice is not)."""
    logits = decoder(decode_view(x))
    return logits if bias is None else logits - bias


def origin_shift(size: Sequence[int], view: Sequence[int], factor: int, tile: int) -> int:
    """Index (into the t * t cyclic shifts) where an image of ``size`` (H, W), read through its view of
    ``view`` (h, w) (:func:`view_offsets`), has its tile origin if it was not cropped (0: the view's
    offset is a whole number of tiles)."""
    y0, x0 = view_offsets(size, view)
    return (y0 // factor % tile) * tile + x0 // factor % tile


def geometry_view(y: torch.Tensor, angle: float, scale: float) -> torch.Tensor:
    """Undo a rotation by ``angle`` degrees (counter-clockwise, about the centre) and a resize by
    ``scale``: luminance y [B, 1, H, W] -> [B, 1, H / scale, W / scale] (black where unknown)."""
    import kornia

    if abs(angle) > 1e-3:
        a = torch.full((y.shape[0],), -angle, device=y.device, dtype=y.dtype)
        y = kornia.geometry.transform.rotate(y, a, padding_mode="zeros")
    if abs(scale - 1.0) > 1e-3:
        h, w = y.shape[-2:]
        y = resize(y, (max(64, round(h / scale)), max(64, round(w / scale))))
    return decode_view(y)


def denoise_view(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Luminance y [B, 1, H, W] low-passed by a Gaussian of ``sigma`` native px (same shape): trades the
    mark's highest frequencies for much less broadband noise."""
    return gaussian_blur(y, sigma, "reflect")


def noise_level(y: torch.Tensor) -> torch.Tensor:
    """Luminance y [B, 1, H, W] -> [B]: a robust estimate of its noise standard deviation, the median
    absolute Haar diagonal detail / 0.6745 (Donoho). Cheap (no network pass); textures raise it too."""
    h, w = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    a = y[..., :h, :w]
    hh = (a[..., 0::2, 0::2] - a[..., 1::2, 0::2] - a[..., 0::2, 1::2] + a[..., 1::2, 1::2]) / 2
    return hh.abs().flatten(1).median(-1).values / 0.6745


def phase_views(y: torch.Tensor) -> list[torch.Tensor]:
    """The other pooling phases of y [B, 1, H, W]: views shifted by one native pixel (odd crop
    offsets put the tile half a working pixel off the decoder's grid)."""
    return [y[..., py:, px:] for py, px in PHASES]


def _median_energy(a: torch.Tensor) -> torch.Tensor:
    """Logits at every shift [B, n, S] -> the median over shifts of the energy [B, 1, 1]."""
    return a.pow(2).sum(1).median(-1).values.clamp_min(1e-12).view(-1, 1, 1)


def combine_views(shifts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at every cyclic shift of several views of the same image, each [B, n, S] -> (logits
    [B, n] at the shift of largest combined energy, combined logits [B, n, S]). Each view is divided
    by the square root of its median shift energy (its scale where no alignment stands out) before
    summing; the sum is rescaled to the first view's scale. Key-blind, so the bits stay uniform under
    the null."""
    total = sum(a / _median_energy(a).sqrt() for a in shifts)
    total = total * (_median_energy(shifts[0]) / _median_energy(total)).sqrt()
    return energy_logits(total), total


def energy_shift(shifts: torch.Tensor) -> torch.Tensor:
    """Logits at every shift [B, n, S] -> index [B] of the shift of largest energy (sum of squares)."""
    return shifts.detach().pow(2).sum(1).argmax(-1)


def peak_ratio(shifts: torch.Tensor) -> torch.Tensor:
    """[B, n, S] -> [B]: the largest logit energy over shifts / its median. About 1-2 without a mark
    (or under the wrong geometry), larger where one alignment stands out; unlike the energy it does
    not grow with the view's size or smoothness, and it ignores the signs and the key."""
    e = shifts.pow(2).sum(1)
    return e.max(-1).values / e.median(-1).values.clamp_min(1e-12)


def at_shift(shifts: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Logits at every shift [B, n, S] and shift indices [B] -> logits [B, n]."""
    return shifts.gather(2, idx.view(-1, 1, 1).expand(-1, shifts.shape[1], 1)).squeeze(-1)


def energy_logits(shifts: torch.Tensor) -> torch.Tensor:
    """[B, n, S] -> [B, n] at the shift of largest energy."""
    return at_shift(shifts, energy_shift(shifts))


def alignment_scores(shifts: torch.Tensor) -> torch.Tensor:
    """Logits at every cyclic shift [B, n, S] -> a key-blind score per shift [B, S]: the sum over bits
    of log cosh(logit / m), m the image's median |logit|. Like the energy near 0 but only linear in
    large logits, so a few big responses to image content weigh less than many bits read clearly."""
    m = shifts.abs().flatten(1).median(-1).values.clamp_min(1e-12).view(-1, 1, 1)
    a = (shifts / m).abs()
    return (a + torch.nn.functional.softplus(-2 * a) - math.log(2)).sum(1)


def origin_rule(shifts: torch.Tensor, origin: int | None, margin: float | None = None) -> torch.Tensor:
    """The shift [B] the low-passed reads are taken at, from the logits at every shift [B, n, S]: the
    image's own tile origin (:func:`origin_shift`; most images are not cropped) unless another shift's
    :func:`alignment_scores` beats the origin's by over ``ORIGIN_MARGIN`` robust standard deviations
    (1.4826 x the median absolute deviation of the scores over shifts; ``margin`` overrides it), else
    the shift of best score. Key-blind. Heavy noise hides the alignment from the energy long before it
    erases the bits; the margin's choice: ``bench/origin_margin.py``."""
    sc = alignment_scores(shifts)  # [B, S]
    idx = sc.argmax(-1)
    if origin is not None:
        med = sc.median(-1, keepdim=True).values
        spread = 1.4826 * (sc - med).abs().median(-1).values.clamp_min(1e-12)
        keep = sc[:, origin] + (ORIGIN_MARGIN if margin is None else margin) * spread >= sc.max(-1).values
        idx = torch.where(keep, torch.full_like(idx, origin), idx)
    return idx


def report_logits(shifts: torch.Tensor, origin: int | None, margin: float | None = None) -> torch.Tensor:
    """Logits [B, n] at :func:`origin_rule`'s shift."""
    return at_shift(shifts, origin_rule(shifts, origin, margin))


# -- soft-decision decoding of the keyed code ----------------------------------------------------
@dataclass(frozen=True)
class CodeMatrix:
    """The keyed code as a binary affine map: carried bits = (payload bits [k] @ ``generator``
    [k, n]) mod 2 XOR ``keystream`` [n]. Reed-Solomon over GF(256) is linear over GF(2), and the keyed
    permutation and XOR keep it affine, so the 2**k codewords are exactly these (:meth:`of`)."""

    generator: np.ndarray  # [k, n] uint8
    keystream: np.ndarray  # [n] uint8

    @classmethod
    def of(cls, code: PayloadCode, key) -> "CodeMatrix":
        k = code.k_bits
        zero = code.encode(bytes(code.data_bytes), key)  # = keystream (the zero payload's codeword is 0)
        rows = [code.encode(bits_to_bytes(np.eye(k, dtype=np.uint8)[j]), key) ^ zero for j in range(k)]
        return cls(np.stack(rows).astype(np.uint8), zero.astype(np.uint8))

    def encode(self, payload_bits: np.ndarray) -> np.ndarray:
        return ((payload_bits.astype(np.int64) @ self.generator) % 2).astype(np.uint8) ^ self.keystream


def osd_decode(logits: np.ndarray, cm: CodeMatrix, order: int = 2) -> tuple[np.ndarray, int]:
    """Ordered-statistics decoding of carried-bit logits [n] -> (carried codeword [n], bits agreeing
    with it). The k most reliable independent positions (largest |logit|) fix a codeword; every
    pattern of at most ``order`` flips among them gives another (1 + k + k(k-1)/2 for order 2); the
    one of largest correlation with the logits wins (:func:`correlation`). It finds the codeword where
    a few dozen bits are wrong as long as at most ``order`` of them are among the most reliable, far
    beyond the 5 byte errors Reed-Solomon corrects. Whatever codeword a decoder picks, the union bound
    keeps the p-value valid (:func:`codeword_log_pvalue`)."""
    g = cm.generator
    k, n = g.shape
    lg = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = (lg > 0).astype(np.uint8) ^ cm.keystream  # the received word in code space
    rel = np.abs(lg)
    m = g.copy()
    pivots: list[int] = []
    for col in np.argsort(-rel, kind="stable"):  # row-reduce on the most reliable independent columns
        r = len(pivots)
        if r == k:
            break
        nz = np.flatnonzero(m[r:, col])
        if nz.size == 0:
            continue
        if nz[0]:
            m[[r, r + nz[0]]] = m[[r + nz[0], r]]
        others = np.flatnonzero(m[:, col])
        m[others[others != r]] ^= m[r]
        pivots.append(int(col))
    c0 = (y[pivots].astype(np.int64) @ m % 2).astype(np.uint8)  # row r of m has its pivot 1 at pivots[r]
    cands = [c0[None]]
    if order >= 1:
        cands.append(c0[None] ^ m)
    if order >= 2:
        i, j = np.triu_indices(k, 1)
        cands.append(c0[None] ^ m[i] ^ m[j])
    diff = np.concatenate(cands) ^ y[None]
    best = int(np.argmin(diff @ rel))  # the largest correlation sum_i logit_i (2 c_i - 1)
    return (diff[best] ^ y) ^ cm.keystream, int(n - diff[best].sum())


def correlation(logits: np.ndarray, carried: np.ndarray) -> float:
    """sum_i logit_i (2 c_i - 1): logits [n] against carried codeword bits c [n] (0/1)."""
    return float(np.dot(logits, 2.0 * carried - 1.0))


def rademacher_log_tail(w: np.ndarray, t: float) -> float:
    """ln of the Chernoff bound on P[sum_i w_i s_i >= t] for s_i iid uniform on {-1, +1}:
    min over lam >= 0 of -lam t + sum_i ln cosh(lam w_i) (0 for t <= 0; -(number of w_i > 0) ln 2,
    the probability of all signs right, for t = sum |w_i|)."""
    w = np.abs(np.asarray(w, dtype=np.float64).reshape(-1))
    top = float(w.sum())
    if t <= 0 or top <= 0:
        return 0.0
    if t >= top * (1 - 1e-12):
        return -float((w > 0).sum()) * math.log(2)

    def grad(lam: float) -> float:  # d/dlam of the exponent + t: increasing in lam
        return float(np.dot(w, np.tanh(lam * w)))

    lo, hi = 0.0, 1.0 / float(w.max())
    for _ in range(200):
        if grad(hi) >= t:
            break
        lo, hi = hi, 2 * hi
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if grad(mid) < t else (lo, mid)
    lam = hi
    a = lam * w
    return min(0.0, float(-lam * t + np.sum(a + np.log1p(np.exp(-2 * a)) - math.log(2))))


def codeword_log_pvalue(logits: np.ndarray, carried: np.ndarray, n_codewords: float = 1.0) -> float:
    """ln p-value of "the logits [n] carry codeword ``carried`` [n]" out of ``n_codewords`` searched
    (2**48 for the best decoded one: the union bound; 1 for a known payload's): ln n_codewords + the
    Chernoff tail of its correlation (:func:`rademacher_log_tail` with weights |logit|). Valid because
    without the mark (or under another key) the descrambled signs are iid uniform whatever the logits'
    magnitudes: the key's XOR stream is independent of the image. A soft test: bits read with little
    confidence weigh little, so a read with 15 of 128 bits wrong, mostly the unsure ones, still
    detects (the hard count's binomial tail would not)."""
    return min(0.0, math.log(n_codewords) + rademacher_log_tail(logits, correlation(logits, carried)))


# -- detection settings ------------------------------------------------------------------------
ANGLE_REFINE = (-0.4, -0.2, 0.0, 0.2, 0.4)  # degrees around the lattice estimate
PHASES = ((0, 1), (1, 0), (1, 1))  # native-pixel offsets tried besides (0, 0): the 2x2 pooling phase
LATTICE_MIN = (1.75, 1.5)  # lattice score from which the geometric reads are tried, views < / >= 96 px per side
# (above the largest of 120 unmarked training crops per size: 1.71 at 64 px, 1.38-1.46 at 96-512 px)
DENOISE_SIGMAS = (0.8, 1.6)  # native px: Gaussian pre-filters read where the raw reads are weak
RECHECK_AGREE = 0.9  # a read so far agreeing with its codeword on fewer bits than this: the low-passed views are read
NOISE_MIN = 2.5 / 255  # noise level (noise_level) from which the low-passed reads are made: on 20 training photos
# they decided a detection only at 3.7/255 and up (noise, the degradation chain); unmarked photos: median 1.9/255
NOISE_HIGH = 4.5 / 255  # noise level from which they are made whatever the reads so far (the degradation chain at
# s = 0.4-0.5 reads 5-7/255 and its detections may show no trace in the raw read); training photos: 16% above
TRACE_MAX = 0.1  # from NOISE_MIN to NOISE_HIGH the low-passed reads are made only where a read so far tested below
# this p (before x K) or the lattice is seen (lattice_min; key-blind, computed for the later rows anyway): odd
# crops, whose raw reads can show no trace, are read low-passed as before
ORIGIN_MARGIN = 3.0  # see origin_rule; chosen on the training photos, not Kodak (bench/origin_margin.py)
OSD_ORDER = 2  # flips tried among the most reliable bits (osd_decode)
BATCH_PIXELS = {"cuda": 2 ** 24, "cpu": 0}  # decoded-view pixels per batched pass, by device type (0: one
# image per pass). On CPU a batch is slower per image (the prefilter's activations leave the cache: 512 px,
# 1 thread, 38 ms per image one at a time, 70 at 4, 105 at 8); results do not depend on it


@dataclass(frozen=True)
class Hypothesis:
    """One row of the detection table. ``gate(search, i)``: image i's read is worth its cost (looks at
    the image only); ``read(search, idx)``: one :class:`Read` per image of ``idx`` (None where the read
    turns out to be another hypothesis's); ``until``: skipped once a read so far detects with at least
    this fraction of its bits agreeing with its codeword (1: unless perfect, 0: unless detected);
    ``aligns``: with a known payload, the codeword's own best shift is tested too (x S);
    ``fallback``: the read reported where no read detects; ``exists_for``, ``gates``, ``reads``: the
    same in words (:func:`hypothesis_table`)."""

    name: str
    exists_for: str
    gates: str
    reads: str
    gate: Callable[["_Search", int], bool] = field(repr=False)
    read: Callable[["_Search", list[int]], list["Read | None"]] = field(repr=False)
    until: float = 0.0
    aligns: bool = True
    fallback: bool = False


@dataclass(frozen=True)
class Frame:
    """The view a read was taken through, relative to the decoded view of the image as given: the
    image flipped left-right (``flip``, first), rotation by ``angle`` degrees undone and resize by
    ``scale`` undone (:func:`geometry_view`), then ``phase`` (py, px) native px dropped at the top-left
    (:func:`phase_views`). The identity for the image as given. Strip maps the image back to the
    mark's tile through it (:func:`frame_affine`)."""

    angle: float = 0.0
    scale: float = 1.0
    phase: tuple[int, int] = (0, 0)
    flip: bool = False


@dataclass(frozen=True)
class Read:
    """One hypothesis's read of one image: logits (minus the null bias) at every cyclic shift [n, S],
    the shift chosen without the key and the view it was read through (:class:`Frame`)."""

    shifts: torch.Tensor
    shift: int
    frame: Frame = Frame()

    @property
    def logits(self) -> torch.Tensor:
        return self.shifts[:, self.shift]


class _Search:
    """The reads of a batch of same-sized images y [B, 1, h, w] (decoded views of luminance), computed
    once each, batched, on demand: the raw read, the lattice estimate, the low-passed reads."""

    def __init__(self, wm: "ImageWatermarker", y: torch.Tensor, origin: int, names: Sequence[str] = ()):
        self.wm, self.y, self.origin, self.names = wm, y, origin, tuple(names)
        self.feats = wm.decoder.features(y)
        self.raw = wm.shift_logits(self.feats)  # [B, n, S]
        self.peak = energy_shift(self.raw).tolist()
        self.ratio = peak_ratio(self.raw).tolist()
        self.noise = noise_level(y).tolist()
        self.trace = [math.inf] * y.shape[0]  # the least p-value (before x K) of image i's reads so far
        self._lattice: dict[int, tuple[float, float, float]] = {}
        self._low: dict[int, list[torch.Tensor]] = {}

    def lattice(self, i: int) -> tuple[float, float, float]:
        """(angle, scale, score) of the tile lattice of image i (:meth:`ImageWatermarker.estimate_geometry`)."""
        if i not in self._lattice:
            self._lattice[i] = self.wm.estimate_geometry(self.y[i:i + 1], self.feats[i:i + 1])
        return self._lattice[i]

    def lattice_seen(self, i: int) -> bool:
        return self.lattice(i)[2] >= lattice_min(self.y.shape[-2:])

    def geometric(self, i: int) -> bool:
        ang, scale, _ = self.lattice(i)
        return abs(ang) > 0.05 or abs(scale - 1) > 0.004

    def low(self, idx: list[int]) -> list[list[torch.Tensor]]:
        """The low-passed reads [n, S] of each image of ``idx``, one per ``DENOISE_SIGMAS``."""
        need = [i for i in idx if i not in self._low]
        if need:
            yi = self.y[need]
            reads = [self.wm.shift_logits(self.wm.decoder.features(denoise_view(yi, s))) for s in DENOISE_SIGMAS]
            for j, i in enumerate(need):
                self._low[i] = [r[j] for r in reads]
        return [self._low[i] for i in idx]

    def at_origin_rule(self, shifts: torch.Tensor) -> Read:
        return Read(shifts, int(origin_rule(shifts[None], self.origin)[0]))


def lattice_min(view: Sequence[int]) -> float:
    """The lattice score from which a view of ``view`` (h, w) native px shows the tile lattice."""
    return LATTICE_MIN[0] if min(view) < 96 else LATTICE_MIN[1]


def _always(s: _Search, i: int) -> bool:
    return True


def _read_origin(s: _Search, idx: list[int]) -> list[Read | None]:
    return [Read(s.raw[i], s.origin) for i in idx]


def _gate_shift(s: _Search, i: int) -> bool:
    return s.peak[i] != s.origin or "origin" not in s.names  # else it is the origin's read


def _read_shift(s: _Search, idx: list[int]) -> list[Read | None]:
    return [Read(s.raw[i], s.peak[i]) for i in idx]


def _gate_phase(s: _Search, i: int) -> bool:
    return s.peak[i] != s.origin and s.lattice_seen(i) and not s.geometric(i)


def _read_phase(s: _Search, idx: list[int]) -> list[Read | None]:
    yi = s.y[idx]
    reads = [s.wm.shift_logits(s.wm.decoder.features(v)) for v in phase_views(yi)]  # each [b, n, S]
    ratios = torch.stack([peak_ratio(r) for r in reads])  # [3, b]
    out: list[Read | None] = []
    for j, i in enumerate(idx):
        p = int(ratios[:, j].argmax())
        if float(ratios[p, j]) <= s.ratio[i]:  # the image as given aligns best: the shift hypothesis's read
            out.append(None)
            continue
        sh = reads[p][j]
        out.append(Read(sh, int(energy_shift(sh[None])[0]), Frame(phase=PHASES[p])))
    return out


def _gate_noisy(s: _Search, i: int) -> bool:
    return s.noise[i] >= NOISE_HIGH or (s.noise[i] >= NOISE_MIN and (s.trace[i] < TRACE_MAX or s.lattice_seen(i)))


def _read_denoised(s: _Search, idx: list[int]) -> list[Read | None]:
    low = s.low(idx)
    return [s.at_origin_rule(combine_views([s.raw[i][None]] + [v[None] for v in lo])[1][0])
            for i, lo in zip(idx, low)]


def _read_low(which: int) -> Callable[[_Search, list[int]], list[Read | None]]:
    def read(s: _Search, idx: list[int]) -> list[Read | None]:
        return [s.at_origin_rule(lo[which]) for lo in s.low(idx)]
    return read


def _gate_geometry(s: _Search, i: int) -> bool:
    return s.lattice_seen(i) and s.geometric(i)


def _read_geometry(s: _Search, idx: list[int]) -> list[Read | None]:
    out: list[Read | None] = []
    for i in idx:
        ang, scale, _ = s.lattice(i)
        sh, frame = s.wm.geometry_pick(s.y[i:i + 1], ang, scale)
        out.append(Read(sh[0], int(energy_shift(sh)[0]), frame))
    return out


def _gate_mirror(s: _Search, i: int) -> bool:
    return s.lattice_seen(i)


def _read_mirror(s: _Search, idx: list[int]) -> list[Read | None]:
    sh = s.wm.shift_logits(s.wm.decoder.features(s.y[idx].flip(-1)))
    return [Read(sh[j], int(energy_shift(sh[j:j + 1])[0]), Frame(flip=True)) for j in range(len(idx))]


#: The detection table, in the order tried. K = len(HYPOTHESES) in every p-value (the rows named by
#: ``detect(hypotheses=...)`` where given; ``search=False``: QUICK).
HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis("origin", "an image as marked, not cropped (most images)",
               "always (an image's own tile origin follows from its size)",
               "the image as given, at its own tile origin", _always, _read_origin, 1.0, aligns=False),
    Hypothesis("shift", "crops and translations (by even offsets)",
               "the shift of largest logit energy is not the origin",
               "the image as given, at the shift of largest logit energy", _gate_shift, _read_shift, 1.0),
    Hypothesis("phase", "crops at odd offsets (the tile half a working pixel off the 2x2 grid)",
               "the tile lattice is seen (lattice_min) unrotated and unscaled, and the energy's shift "
               "is not the origin", "the other 2x2 pooling phase of largest peak ratio where it beats the image "
               "as given, at its shift of largest energy", _gate_phase, _read_phase, 1.0),
    Hypothesis("denoised", "noise, blur, heavy compression (the degradation chain)",
               f"the image is noisy (noise_level >= {NOISE_MIN * 255:g}/255) and a read so far tested below p = "
               f"{TRACE_MAX:g} or the tile lattice is seen (odd crops), or very noisy (>= {NOISE_HIGH * 255:g}/255)",
               f"the raw read and reads low-passed at sigma {DENOISE_SIGMAS} px summed (each scaled by its "
               "median shift energy), at the origin unless another shift's alignment score beats it "
               f"by {ORIGIN_MARGIN:g} robust SDs", _gate_noisy, _read_denoised, RECHECK_AGREE, fallback=True),
    Hypothesis(f"lowpass-{DENOISE_SIGMAS[0]:g}", "heavy JPEG, noise where the sum still misses", "as denoised",
               f"the read low-passed at sigma {DENOISE_SIGMAS[0]:g} px alone, at the same rule's shift",
               _gate_noisy, _read_low(0), RECHECK_AGREE),
    Hypothesis(f"lowpass-{DENOISE_SIGMAS[1]:g}", "heavy noise", "as denoised",
               f"the read low-passed at sigma {DENOISE_SIGMAS[1]:g} px alone, at the same rule's shift",
               _gate_noisy, _read_low(1), RECHECK_AGREE),
    Hypothesis("geometry", "rotation and resizing", "the tile lattice is seen (lattice_min), rotated or scaled",
               "rotation and scale estimated from the tile lattice undone, refined by peak ratio (the estimate "
               "or a square-lattice alias; angle +-0.4 deg; scale +-0.3%; pooling phase), at the shift of "
               "largest energy", _gate_geometry, _read_geometry, 0.0),
    Hypothesis("mirror", "horizontal flips", "the tile lattice is seen (lattice_min)",
               "the image flipped left-right, at the shift of largest energy", _gate_mirror, _read_mirror, 0.0),
)
#: the hypotheses of ``detect(search=False)``: one decoder pass on the image as given
QUICK = ("origin", "shift")


def hypothesis_table() -> str:
    """:data:`HYPOTHESES` as a markdown table."""
    rows = ["| # | hypothesis | exists for | tried where (key-blind) | reads | skipped once a read detects with |",
            "|---|---|---|---|---|---|"]
    for j, h in enumerate(HYPOTHESES, 1):
        stop = "any agreement" if h.until == 0 else ("all bits agreeing" if h.until == 1 else
                                                     f">= {h.until:.0%} of bits agreeing")
        rows.append(f"| {j} | {h.name} | {h.exists_for} | {h.gates} | {h.reads} | {stop} |")
    return "\n".join(rows)


@dataclass(frozen=True)
class _Outcome:
    """A read's test: its own p-value (before x K), the logits it reports [n], the agreement with
    the codeword it tested, the decoded payload and the bytes corrected."""

    p: float
    logits: np.ndarray
    agree: int
    payload: bytes | None
    n_corrected: int


def weights_blob(name: str = "default") -> bytes:
    """The bytes of shipped weights ``weights/<name>.pt``, verified against ``weights/<name>.sha256``."""
    from wmark.assets import shipped_blob

    return shipped_blob("wmark.image", name, "image watermark weights")


# -- the model ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """Architecture and embedding settings stored with the weights."""

    n_bits: int = 128
    data_bytes: int = 6
    rms: float = 0.0072
    period: int = 64  # native pixels per tile repeat
    factor: int = 2  # decoder working grid = native / factor
    enc_ch: int = 16
    dec_ch: int = 24
    dec_depth: int = 4
    dec_out: int = 4

    @property
    def tile(self) -> int:
        """Tile size on the decoder's working grid."""
        return self.period // self.factor

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class ImageWatermarker(nn.Module):
    """Encoder + decoder + keyed RS code. Use :meth:`load` for the shipped weights."""

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = config or Config()
        c = self.config
        self.code = PayloadCode(c.data_bytes, c.n_bits // 8 - c.data_bytes)
        self.encoder = Encoder(c.n_bits, c.period, c.enc_ch)
        self.decoder = Decoder(c.n_bits, c.tile, c.factor, c.dec_ch, c.dec_depth, c.dec_out)
        self.register_buffer("null_bias", torch.zeros(c.n_bits))
        self._lattice: tuple[torch.Tensor, torch.Tensor] | None = None
        self._codes: OrderedDict = OrderedDict()  # key -> (CodeMatrix, default codeword), a few keys

    # -- training ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, bits: torch.Tensor, attack=None,
                rms_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: x [B, C, H, W], bits [B, n] -> (marked [B, C, H, W], logits [B, n]).

        ``attack`` is an optional differentiable callable ``images -> (attacked, (dy, dx))`` where
        (dy, dx) is the native-pixel offset of the attacked image's origin in the marked one (a crop);
        the decoder is then read at the known alignment. Without it the best shift is searched.
        ``rms_scale`` > 1 strengthens the mark (curriculum early in training)."""
        c = self.config
        marked = apply_residual(x, residual(self.encoder, x, bits_to_signs(bits), c.rms * rms_scale))
        if attack is None:
            return marked, self.decoder(marked)
        attacked, (dy, dx) = attack(marked)
        shift = torch.tensor([[(dy // c.factor) % c.tile, (dx // c.factor) % c.tile]] * x.shape[0])
        return marked, self.decoder(attacked, shift)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, blob: bytes) -> "ImageWatermarker":
        state = torch.load(_io.BytesIO(blob), map_location="cpu", weights_only=True)
        model = cls(Config(**json.loads(state["config"])))
        model.load_state_dict(state["state_dict"])
        return model.eval()

    def to_bytes(self) -> bytes:
        buf = _io.BytesIO()
        sd = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        torch.save({"config": json.dumps(self.config.to_dict()), "state_dict": sd}, buf)
        return buf.getvalue()

    @classmethod
    def load(cls, name: str = "default", device: str | torch.device | None = None) -> "ImageWatermarker":
        """Load shipped weights ``weights/<name>.pt`` (sha256-verified against ``weights/<name>.sha256``)."""
        blob = weights_blob(name)
        model = cls.from_bytes(blob)
        if device is not None:
            model = model.to(device)
        return model

    @property
    def device(self) -> torch.device:
        return self.null_bias.device

    # -- reading -------------------------------------------------------------------------------
    def _signs(self, payload, key, b: int) -> tuple[torch.Tensor, np.ndarray, bytes]:
        data = parse_payload(payload, self.code.data_bytes)
        bits = self.code.encode(data, key)
        signs = bits_to_signs(torch.from_numpy(bits.astype(np.float32))).to(self.device)
        return signs.expand(b, -1), bits, data

    @torch.no_grad()
    def embed_tensor(self, x: torch.Tensor, key, payload=None, strength: float = 1.0,
                     out: torch.Tensor | None = None) -> torch.Tensor:
        """Mark x [B, C, H, W] in [0, 1] (C = 1 or 3) -> marked [B, C, H, W]; ``strength``: see
        :meth:`embed`. Images above ``BAND_PIXELS`` are marked in row bands (:func:`embed_banded`);
        ``out`` (on the model's device; x itself may be given) receives them."""
        check_strength(strength)
        self.eval()
        x = x.to(self.device)
        signs, _, _ = self._signs(payload, key, x.shape[0])
        rms = self.config.rms * strength
        if x.shape[-2] * x.shape[-1] <= BAND_PIXELS:
            return apply_residual(x, residual(self.encoder, x, signs[:1], rms), out)
        tile = self.encoder(signs[:1])
        out = torch.empty_like(x) if out is None else out
        for i in range(x.shape[0]):
            embed_banded(tile, x[i:i + 1], rms, out[i:i + 1])
        return out

    @torch.no_grad()
    def logits_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Bit logits [B, n] of images x [B, C, H, W] at the shift of largest energy (:func:`read_logits`)."""
        self.eval()
        return read_logits(self.decoder, x.to(self.device), self.null_bias)

    def shift_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Prefilter output [B, C, h, w] -> logits at every cyclic shift [B, n, t * t], minus the null
        bias: every read of the detector goes through here."""
        al = self.decoder.all_shifts(standardize(fold(features, self.config.tile)))
        return (al - self.null_bias.view(1, -1, 1, 1)).flatten(2)

    def read_all(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [B, n] at the shift of largest energy, logits at every shift [B, n, S]) of prefilter
        output [B, C, h, w] (:meth:`shift_logits`)."""
        sh = self.shift_logits(features)
        return energy_logits(sh), sh

    def low_passed_reads(self, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(logits at the energy's shift [B, n], at every shift [B, n, S]) of luminance y [B, 1, H, W]
        low-passed by each of ``DENOISE_SIGMAS``."""
        out = []
        for sigma in DENOISE_SIGMAS:
            out.append(self.read_all(self.decoder.features(denoise_view(y, sigma))))
        return out

    def lattice(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The strongest lattice frequencies of this encoder's tiles and their weights (cached)."""
        if self._lattice is None:
            from wmark.image.nets import lattice_points

            g = torch.Generator().manual_seed(0)
            signs = (torch.randint(0, 2, (64, self.config.n_bits), generator=g).float() * 2 - 1).to(self.device)
            with torch.no_grad():
                tiles = self.encoder(signs)[:, 0].float().cpu()
            self._lattice = lattice_points(torch.fft.fft2(tiles).abs().pow(2).mean(0))
        return self._lattice

    def estimate_geometry(self, x: torch.Tensor, features: torch.Tensor | None = None) -> tuple[float, float, float]:
        """(angle in degrees, scale, lattice score) of the mark's tile lattice in image x [1, C, H, W],
        read from the decoder's prefilter output (it isolates the mark better than a plain high-pass;
        pass ``features`` = ``decoder.features(x)`` when already computed)."""
        from wmark.image.nets import estimate_geometry

        pts, wts = self.lattice()
        if features is None:
            with torch.no_grad():
                features = self.decoder.features(x)
        return estimate_geometry(features.float().cpu(), pts, wts, self.config.tile, max_side=384, highpass=False)

    def _pick(self, views: list[torch.Tensor]) -> tuple[int, float, torch.Tensor]:
        """(index, peak ratio, logits at every shift [1, n, S]) of the view of largest peak ratio."""
        reads = [self.shift_logits(self.decoder.features(v)) for v in views]
        ratios = [float(peak_ratio(r)[0]) for r in reads]
        j = int(np.argmax(ratios))
        return j, ratios[j], reads[j]

    def geometry_read(self, y: torch.Tensor, ang: float, scale: float) -> torch.Tensor:
        """Logits at every shift [1, n, S] of :meth:`geometry_pick`'s view."""
        return self.geometry_pick(y, ang, scale)[0]

    def geometry_pick(self, y: torch.Tensor, ang: float, scale: float) -> tuple[torch.Tensor, Frame]:
        """Logits at every shift [1, n, S] of luminance y [1, 1, H, W] with the estimated rotation /
        scale undone. Each choice is by peak ratio (sign- and key-blind): the estimate or a
        square-lattice alias (theta + 45, scale * or / sqrt 2, sharing half the lattice's peaks); the
        angle (+-0.4 deg, and theta -+ 90 near +-45, which the lattice cannot tell apart); the scale
        (+-0.3%, or exactly 1 when close); the pooling phase. ``ang`` / ``scale``: the lattice estimate
        (:meth:`estimate_geometry`). Returns (logits at every shift [1, n, S], the view's :class:`Frame`)."""
        alias = ang - 45 if ang > 0 else ang + 45
        cands = [(ang, scale)] + [(alias, scale * f) for f in (2 ** 0.5, 2 ** -0.5) if 0.45 <= scale * f <= 1.6]
        ang, scale = cands[self._pick([geometry_view(y, a, s) for a, s in cands])[0]]
        angles = [ang + da for da in ANGLE_REFINE]
        if abs(ang) > 40:
            angles.append(ang - 90 * math.copysign(1, ang))
        ang = angles[self._pick([geometry_view(y, a, scale) for a in angles])[0]]
        scales = [scale, scale * 0.997, scale * 1.003] + ([1.0] if abs(scale - 1) < 0.008 else [])
        views = [geometry_view(y, ang, s) for s in scales]
        j, r, sh = self._pick(views)
        p, r_phase, sh_phase = self._pick(phase_views(views[j]))
        if r >= r_phase:
            return sh, Frame(ang, scales[j])
        return sh_phase, Frame(ang, scales[j], PHASES[p])

    # -- testing one read ------------------------------------------------------------------------
    def code_matrix(self, key) -> tuple[CodeMatrix, np.ndarray]:
        """(:class:`CodeMatrix`, the default payload's carried codeword [n]) of ``key`` (a few cached)."""
        if key not in self._codes:
            cm = CodeMatrix.of(self.code, key)
            self._codes[key] = (cm, self.code.encode(None, key))
            while len(self._codes) > 8:
                self._codes.popitem(last=False)
        self._codes.move_to_end(key)
        return self._codes[key]

    def decode_bits(self, logits: np.ndarray, key) -> tuple[bytes | None, np.ndarray | None, int, int]:
        """Carried-bit logits [n] -> (payload, carried codeword [n], bits agreeing with it, bytes
        corrected) of the codeword of largest :func:`correlation` among Reed-Solomon's (with erasures)
        and :func:`osd_decode`'s."""
        hard = (logits > 0).astype(np.uint8)
        r = self.code.decode(hard, key, np.abs(np.tanh(logits / 2)))
        word, _ = osd_decode(logits, self.code_matrix(key)[0], OSD_ORDER)
        if r.ok and correlation(logits, r.codeword) > correlation(logits, word):
            word = r.codeword
        payload = bits_to_bytes(self.code.descramble(word, key)[:self.code.k_bits])
        fixed = self.code.descramble(hard ^ word, key).reshape(-1, 8).any(1).sum()
        return payload, word, int((hard == word).sum()), int(fixed)

    def test_read(self, read: Read, key, codeword: np.ndarray | None, aligns: bool = True,
                  alpha: float = DEFAULT_ALPHA, k: int = 1) -> _Outcome:
        """One read's test (:func:`codeword_log_pvalue`, soft). Payload unknown (``codeword`` None):
        2 x min(the union bound over the 2**48 codewords for the best decoded one (:meth:`decode_bits`),
        the tail against the default payload's codeword), so marks made without a payload detect at
        full strength. Payload known: the tail of its carried ``codeword`` [n] at the read's shift;
        where ``aligns``, also at the shift where it correlates best (z-score) x S, x2, counted only
        where it detects at ``alpha`` after the table's x ``k`` (a larger p-value elsewhere: still
        valid, and the bits reported stay the key-blind shift's, uniform under the null). Returns the
        p-value before x ``k``."""
        sh = read.shifts.detach().cpu().double().numpy()
        lg = sh[:, read.shift]
        hard = (lg > 0).astype(np.uint8)
        payload, word, agree_d, fixed = self.decode_bits(lg, key)
        lp_d = codeword_log_pvalue(lg, word, 2.0 ** self.code.k_bits)
        if codeword is not None:
            lp = codeword_log_pvalue(lg, codeword)
            agree = int((hard == codeword).sum())
            if aligns:
                c = 2.0 * codeword - 1.0
                z = (c @ sh) / np.sqrt((sh ** 2).sum(0)).clip(1e-12)  # [S]
                j = int(z.argmax())
                lp_s = codeword_log_pvalue(sh[:, j], codeword, sh.shape[1])
                if math.log(2 * k / alpha) + lp_s < 0 and lp_s < lp:
                    lg, lp, agree = sh[:, j], lp_s, int(((sh[:, j] > 0) == codeword).sum())
                lp += math.log(2)
            return _Outcome(math.exp(lp), lg, agree, None, 0)
        ref = self.code_matrix(key)[1]
        lp0 = codeword_log_pvalue(lg, ref)
        if lp0 < lp_d:
            return _Outcome(2 * math.exp(lp0), lg, int((hard == ref).sum()), bytes(self.code.data_bytes), 0)
        return _Outcome(2 * math.exp(lp_d), lg, agree_d, payload, fixed)

    # -- detection -------------------------------------------------------------------------------
    @torch.no_grad()
    def detect_views(self, y: torch.Tensor, origin: int, key, payload=None, alpha: float = DEFAULT_ALPHA,
                     hypotheses: Sequence[str] | None = None, reads: list | None = None) -> list[Detection]:
        """The detection procedure (module doc) on decoded views of luminance y [B, 1, h, w] of
        same-sized images whose tile origin is shift ``origin``; ``hypotheses`` names the rows of
        :data:`HYPOTHESES` searched (default all; K = how many). ``reads``: a list that gets the
        winning :class:`Read` of each image appended (None where nothing could read; strip uses its
        shift and frame)."""
        self.eval()
        table = HYPOTHESES if hypotheses is None else tuple(h for h in HYPOTHESES if h.name in hypotheses)
        if hypotheses is not None and len(table) != len(set(hypotheses)):
            known = ", ".join(h.name for h in HYPOTHESES)
            raise ValueError(f"unknown hypothesis in {list(hypotheses)} (known: {known})")
        k, n = len(table), self.code.n_bits
        codeword = None if payload is None else self.code.encode(payload, key)
        s = _Search(self, y.to(self.device), origin, [h.name for h in table])
        b = y.shape[0]
        best: list[tuple[Hypothesis, _Outcome] | None] = [None] * b
        won: list[Read | None] = [None] * b
        tried: list[list[str]] = [[] for _ in range(b)]

        def settled(i: int, until: float) -> bool:
            o = best[i]
            return o is not None and k * o[1].p < alpha and o[1].agree >= until * n

        for h in table:
            idx = [i for i in range(b) if not settled(i, h.until) and h.gate(s, i)]
            if not idx:
                continue
            for i, r in zip(idx, h.read(s, idx)):
                if r is None:
                    continue
                tried[i].append(h.name)
                o = self.test_read(r, key, codeword, h.aligns, alpha, k)
                s.trace[i] = min(s.trace[i], o.p)
                if best[i] is None or _better((h, o), best[i], k, alpha):
                    best[i], won[i] = (h, o), r
        if reads is not None:
            reads.extend(won)
        out = []
        for i in range(b):
            if best[i] is None:  # no hypothesis could read (e.g. only "origin" asked, and no origin)
                z = np.zeros(n)
                out.append(Detection(False, 1.0, None, z.astype(np.uint8), z, 0, n, 0, alpha, "", k, ()))
                continue
            h, o = best[i]
            p = float(min(1.0, k * o.p))
            pl = o.payload if p < alpha else None
            fixed = o.n_corrected
            if codeword is not None:  # a known payload: the payload read from the winning bits
                pl, _, _, fixed = self.decode_bits(o.logits, key)
            out.append(Detection(p < alpha, p, pl, (o.logits > 0).astype(np.uint8), np.abs(np.tanh(o.logits / 2)),
                                 o.agree, n, fixed, alpha, h.name, k, tuple(tried[i])))
        return out

    def detect(self, images, key, payload: bytes | str | int | None = None,
               alpha: float = DEFAULT_ALPHA, search: bool = True,
               hypotheses: Sequence[str] | None = None) -> Detection | list[Detection]:
        """Detect the mark of ``key``. The return type follows the input kind: one image (PIL image,
        numpy [H, W] / [H, W, C], tensor [C, H, W], file path) gives one :class:`Detection`; a list /
        tuple of images or a batch tensor [B, C, H, W] (even B = 1) gives ``list[Detection]``, one per
        image in order (a batch tensor inside a list contributes B entries). Same-sized images are
        read as batches (``BATCH_PIXELS`` per pass on the model's device), with the results of
        one-by-one detection.

        The procedure and its p-value: the module doc; ``search=False`` searches only :data:`QUICK`
        (one decoder pass), ``hypotheses`` any rows of :data:`HYPOTHESES` by name. ``payload`` tests
        one known payload (exact binomial tail, at the key-blind shift and at the shift that agrees
        best with its codeword)."""
        imio.check_key(key)
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if hypotheses is None and not search:
            hypotheses = QUICK
        single = imio.is_single(images)
        data = None if payload is None else parse_payload(payload, self.code.data_bytes)
        c = self.config
        views, origins = [], []
        for xs, _ in imio.iter_internal(images):  # one item's float copy at a time: only its views are kept
            for x in xs:
                for j in range(x.shape[0]):
                    xj = x[j:j + 1]
                    v = luma(decode_view(xj).to(self.device))
                    if v.untyped_storage().data_ptr() == xj.untyped_storage().data_ptr():
                        v = v.clone()  # a grey image's crop: not a view holding the whole image
                    views.append(v)
                    origins.append(origin_shift(xj.shape[-2:], v.shape[-2:], c.factor, c.tile))
            del xs
        groups: dict[tuple, list[int]] = {}
        for i, (v, o) in enumerate(zip(views, origins)):
            groups.setdefault((tuple(v.shape[-2:]), o), []).append(i)
        dets: list[Detection | None] = [None] * len(views)
        budget = BATCH_PIXELS.get(self.device.type, max(BATCH_PIXELS.values()))
        for (hw, o), members in groups.items():
            per = max(1, budget // (hw[0] * hw[1]))
            for a in range(0, len(members), per):
                chunk = members[a:a + per]
                y = torch.cat([views[i] for i in chunk])
                for i, d in zip(chunk, self.detect_views(y, o, key, data, alpha, hypotheses)):
                    dets[i] = d
        return dets[0] if single else dets  # type: ignore[return-value]

    # -- embedding -------------------------------------------------------------------------------
    def embed(self, images, key, payload: bytes | str | int | None = None, verify: bool = True,
              strength: float = 1.0) -> Embedded:
        """Mark images (tensor [B, C, H, W] / [C, H, W] in [0, 1], PIL, numpy, :class:`~wmark.image.io.Image16`,
        or a list of them). With ``verify`` (default) the output, as returned, is read back blind:
        ``Embedded.detectable`` / ``reasons`` / ``p_values`` say whether the mark will be found.

        ``strength`` scales the residual's RMS (``config.rms`` x strength, in (0, ``STRIP_MAX_RMS``]):
        below 1 less visible and less robust, above 1 the reverse (PSNR moves by -20 log10(strength)
        dB; bench/README.md, 'Strength'). Detection needs no setting; strip fits the amplitude."""
        imio.check_key(key)
        check_strength(strength)
        single = imio.is_single(images)
        outs, traits = [], []
        for (x,), m in imio.iter_internal(images):  # one item's float copy at a time, marked in place where
            traits.extend(cover_traits(x[j:j + 1]) for j in range(x.shape[0]))  # it is not the caller's tensor
            own = m.kind != "tensor" and self.device == x.device
            marked = self.embed_tensor(x, key, payload, strength, out=x if own else None).cpu()
            del x
            outs.append(imio.from_internal([marked], [m])[0])
            del marked
        _, bits, data = self._signs(payload, key, 1)
        found: tuple[bool, ...] = ()
        reasons: tuple[str | None, ...] = ()
        pvals: tuple[float, ...] = ()
        if verify:  # what the caller gets, as a detector will read it
            dets = self.detect(outs, key)
            found = tuple(bool(d.detected and d.payload == data) for d in dets)
            reasons = tuple(None if ok else undetectable_reason(t, d, data) for t, d, ok in zip(traits, dets, found))
            pvals = tuple(float(d.p_value) for d in dets)
        return Embedded(outs[0] if single or isinstance(images, torch.Tensor) else outs, data, bits,
                        found, reasons, pvals)

    # -- strip -----------------------------------------------------------------------------------
    def _origin_logits(self, y: torch.Tensor) -> np.ndarray:
        """The read at image y's tile origin (y [1, C, H, W]): logits [n], float64."""
        c = self.config
        view = decode_view(luma(y))
        o = origin_shift(y.shape[-2:], view.shape[-2:], c.factor, c.tile)
        return self.shift_logits(self.decoder.features(view))[0, :, o].detach().double().cpu().numpy()

    def _cancel(self, x: torch.Tensor, fixed: torch.Tensor, basis: torch.Tensor,
                codeword: np.ndarray, steps: int = 3) -> torch.Tensor | None:
        """Where the exact inverse ``fixed`` of x leaves the codeword *negated* at the tile origin (the
        exact tail of its disagreeing bits below ``STRIP_NEGATED``: more was subtracted than the image
        held, a recompressed or resampled image's attenuated mark given the full inverse, which a model
        trained on it would learn; the one-sided detector does not see it): x - a * basis (clamped to
        [0, 1]) for the a in (0, 1) where the codeword's correlation at the origin crosses zero
        (regula falsi from a = 0, where the mark is, and a = 1, the inverse). None where the inverse
        leaves no negative."""
        signs = 2.0 * np.asarray(codeword, dtype=np.float64) - 1.0
        at_one = self._origin_logits(fixed)
        n = len(signs)
        if float(binom_sf(int(((at_one > 0) != (signs > 0)).sum()), n, 0.5)) >= STRIP_NEGATED:
            return None

        def out(a: float) -> torch.Tensor:
            return (x - a * basis).clamp(0, 1)

        lo, hi = (0.0, float(signs @ self._origin_logits(x))), (1.0, float(signs @ at_one))
        a = 1.0
        for _ in range(steps):
            if not lo[1] > 0 > hi[1]:
                break
            a = lo[0] + (hi[0] - lo[0]) * lo[1] / (lo[1] - hi[1])
            ca = float(signs @ self._origin_logits(out(a)))
            if ca > 0:
                lo = (a, ca)
            else:
                hi = (a, ca)
        return out(a)

    @torch.no_grad()
    def strip_one(self, x: torch.Tensor, key, payload: bytes | None = None, alpha: float = DEFAULT_ALPHA,
                  iters: int = 6, passes: int = STRIP_PASSES,
                  hypotheses: Sequence[str] | None = None) -> tuple[torch.Tensor, StripResult, Detection]:
        """Strip one image x [1, C, H, W] (float in [0, 1]; 8-bit values where it came from 8 bits) ->
        (output [1, C, H, W], :class:`StripResult`, the detection before). The procedure and its
        acceptance test: :meth:`strip`; ``hypotheses``: the rows of :data:`HYPOTHESES` its detections
        search (default all)."""
        self.eval()
        x = x.to(self.device)
        c = self.config
        yl = luma(x)
        view = decode_view(yl)
        reads: list = []
        det = self.detect_views(view, origin_shift(x.shape[-2:], view.shape[-2:], c.factor, c.tile), key,
                                payload, alpha, hypotheses, reads=reads)[0]

        def unchanged(reason: str, **kw) -> tuple[torch.Tensor, StripResult, Detection]:
            return x, StripResult(False, reason, det.p_value, det.p_value, det.hypothesis, **kw), det

        read = reads[0]
        if not det.detected or read is None:
            return unchanged(f"no mark found under this key (p = {det.p_value:.3g}, needs < {alpha:g})")
        if x.shape[-2] * x.shape[-1] > STRIP_MAX_PIXELS:
            return unchanged(f"too large to strip ({x.shape[-1]}x{x.shape[-2]} px > {STRIP_MAX_PIXELS / 1e6:g} MP: "
                             "the strip holds whole-image float copies)")
        pl = payload if payload is not None else det.payload
        if payload is None:  # p before and after by the same test: the payload's own
            det = self.detect(x, key, payload=pl, alpha=alpha, hypotheses=hypotheses)[0]
        signs, codeword, _ = self._signs(pl, key, 1)
        sh = read.shifts.detach().cpu().double().numpy()  # the winning read; the payload's best shift in it
        z = ((2.0 * codeword - 1.0) @ sh) / np.sqrt((sh ** 2).sum(0)).clip(1e-12)
        a0 = frame_affine(x.shape[-2:], int(z.argmax()), read.frame, c.factor, c.tile)
        tile = self.encoder(signs[:1])
        mask = perceptual_mask(x)
        off = a0[:, 2] % c.period
        as_marked = read.frame == Frame() and not np.minimum(off, c.period - off).any()
        aff = a0 if as_marked else refine_affine(yl, tile, mask, a0, linear=read.frame.angle != 0
                                                 or read.frame.scale != 1)
        size = tuple(x.shape[-2:])
        basis = tile_field(tile, torch.as_tensor(aff), size) * mask
        fixed = None
        if as_marked:  # the image as marked (perhaps recompressed): the residual of the fixed-point inverse
            fixed = strip_residual(self.encoder, x, signs[:1], c.rms, iters)
            basis = yl - luma(fixed)
        amp, energy = fit_residual(yl, basis)
        if fixed is None:  # the mask of the cover, not of the marked image (the mark raises flat regions' activity)
            fld = tile_field(tile, torch.as_tensor(aff), size)
            for _ in range(STRIP_MASK_ITERS):
                mask = perceptual_mask((x - max(amp, 0.0) * basis).clamp(0, 1))
                basis = fld * mask
                amp, energy = fit_residual(yl, basis)
        null = 0.0
        for dx, dy in STRIP_NULL_OFFSETS:  # the same fit where the mark is not: the cover's own share
            wrong = aff.copy()
            wrong[:, 2] += (dx, dy)
            null = max(null, fit_residual(yl, tile_field(tile, torch.as_tensor(wrong), size) * mask)[1])
        gain = energy / max(null, 1e-30)
        geom = Geometry((tuple(map(float, aff[0])), tuple(map(float, aff[1]))), read.frame.flip, c.period)
        info = dict(geometry=geom, payload=pl, gain=gain)
        if fixed is None and (amp <= 0 or gain < STRIP_GAIN):
            return unchanged(f"the residual is not where the {det.hypothesis!r} read puts the mark (fit gain "
                             f"{gain:.2g} < {STRIP_GAIN:g}): stripping could make the image worse", **info)
        eight = bool(((x * 255 - (x * 255).round()).abs() < 1e-3).all())

        def returned(img: torch.Tensor) -> torch.Tensor:  # as the caller gets it (8-bit where it came so)
            return (img * 255).round() / 255 if eight else img

        after = None  # the payload's test on the output, where already made
        if fixed is not None and (abs(amp - 1) <= STRIP_EXACT or gain < STRIP_GAIN):
            method, out = "fixed-point", returned(fixed)
            cancelled = self._cancel(x, fixed, basis, codeword)  # the inverse overshoots: the amplitude
            if cancelled is not None:                            # that cancels, where the mark is gone too
                cancelled = returned(cancelled)
                trial = self.detect(cancelled, key, payload=pl, alpha=alpha, hypotheses=hypotheses)[0]
                if trial.p_value >= STRIP_GONE:
                    method, out, after = "cancelled", cancelled, trial
        else:
            method = "fitted" if fixed is not None else "warped"
            out = returned((x - amp * basis).clamp(0, 1))
        rms = float((luma(out) - yl).pow(2).mean().sqrt())
        info.update(removed_rms=rms, method=method)
        if rms > STRIP_MAX_RMS * c.rms:
            return unchanged(f"the fitted residual is too large (RMS {rms * 255:.2f}/255 > "
                             f"{STRIP_MAX_RMS * c.rms * 255:.2f}/255)", **info)
        if after is None:
            after = self.detect(out, key, payload=pl, alpha=alpha, hypotheses=hypotheses)[0]
        if after.p_value <= det.p_value:
            return unchanged(f"the strip did not lower the detection (p {det.p_value:.3g} -> "
                             f"{after.p_value:.3g})", p_attempt=after.p_value, **info)
        p_after = after.p_value
        if p_after < STRIP_GONE and passes > 1:  # some left: the same procedure on the output
            o2, r2, _ = self.strip_one(out, key, pl, alpha, iters, passes - 1, hypotheses)
            if r2.changed:
                out, p_after = o2, r2.p_after
                info.update(removed_rms=float((luma(out) - yl).pow(2).mean().sqrt()), method=f"{method}+{r2.method}")
        return out, StripResult(True, "", det.p_value, p_after, det.hypothesis, **info), det

    @torch.no_grad()
    def strip_tensor(self, y: torch.Tensor, key, payload=None, iters: int = 6, alpha: float = DEFAULT_ALPHA,
                     hypotheses: Sequence[str] | None = QUICK) -> tuple[torch.Tensor, list[bool], list[Detection]]:
        """Strip y [B, C, H, W] image by image (:meth:`strip_one`) -> (output [B, C, H, W], changed [B],
        detections before [B]). Searches only the :data:`QUICK` hypotheses by default (images as
        generated: the loop's samples; ``hypotheses=None`` for the whole table, as :meth:`strip`)."""
        data = None if payload is None else parse_payload(payload, self.code.data_bytes)
        outs, changed, dets = [], [], []
        for i in range(y.shape[0]):
            o, r, d = self.strip_one(y[i:i + 1], key, data, alpha, iters, hypotheses=hypotheses)
            outs.append(o), changed.append(r.changed), dets.append(d)
        return torch.cat(outs), changed, dets

    def strip(self, images, key, payload: bytes | str | int | None = None, iters: int = 6,
              alpha: float = DEFAULT_ALPHA) -> Stripped:
        """Key-holder removal, also after the image was recompressed, resized, cropped or rotated.

        Per image: detect (blind, or under ``payload``); the winning read's view (:class:`Frame`: crop
        phase, or rotation and scale undone) and the payload's best shift in it give the map from the
        image's pixels to the mark's tile (:func:`frame_affine`), refined to sub-pixel accuracy
        (:func:`refine_affine`). The residual is re-made where it now lies: the payload's tile through
        that map (:func:`tile_field`) times the perceptual mask of the image, its amplitude fitted by
        least squares (high-passed, :func:`fit_residual`: recompression and resampling attenuate it)
        and subtracted from every channel. An image read as marked (the origin, no geometry) gets the
        exact fixed-point inverse (:func:`strip_residual`: the x with x + r(x) = y), or, where
        recompression clearly scaled the residual (a well-determined fitted amplitude off 1 by more than
        ``STRIP_EXACT``), that residual at the fitted amplitude; where the exact inverse would leave the
        codeword negated (its disagreeing bits' tail below ``STRIP_NEGATED``: more was subtracted than
        the image held), the residual at the amplitude that cancels the codeword's correlation
        (:meth:`_cancel`), so that no negative of the mark is imprinted, where the payload's test finds
        the mark gone there too (p >= ``STRIP_GONE``; else the exact inverse).

        **Never worse, without the cover.** Subtracting the least-squares projection P y of the image
        y = cover + d onto the residual's direction changes the squared error to the cover by
        ||P cover||**2 - ||P d||**2: it improves exactly where the mark's share of the fitted energy
        exceeds the cover's. The cover's share is measured by the same fit at wrong alignments
        (``STRIP_NULL_OFFSETS``); a warped strip is made only where the fitted energy is ``STRIP_GAIN``
        (4) times the largest of those (so ||P d|| >= ||P y|| - ||P cover|| >= ||P cover|| where the cover's
        share is at most that largest one) and the amplitude is positive (the
        exact inverse of an image read as marked needs no fit: small images such as 64 px samples could
        not pass that test); in every case what is
        subtracted is at most ``STRIP_MAX_RMS`` x the embedding RMS, and the payload's own test on the
        output gives a larger p-value than before. Otherwise the image comes back byte-identical with
        ``changed`` False and a ``reason``. Images where no mark is detected come back unchanged too.

        Returns :class:`Stripped`: the images (same type and layout as the input) and one
        :class:`StripResult` per image."""
        imio.check_key(key)
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        xs, metas, single = imio.to_internal(images)
        data = None if payload is None else parse_payload(payload, self.code.data_bytes)
        outs, results, before = [], [], []
        for x in xs:
            parts = []
            for j in range(x.shape[0]):
                o, r, d = self.strip_one(x[j:j + 1], key, data, alpha, iters)
                parts.append(o.cpu() if r.changed else x[j:j + 1]), results.append(r), before.append(d)
            outs.append(torch.cat(parts))
        imgs = imio.from_internal(outs, metas)
        return Stripped(imgs[0] if single or isinstance(images, torch.Tensor) else imgs,
                        tuple(r.changed for r in results), tuple(before), tuple(results))


def _better(a: tuple[Hypothesis, _Outcome], b: tuple[Hypothesis, _Outcome], k: int, alpha: float) -> bool:
    """Whether (hypothesis, outcome) ``a`` wins over ``b`` (tried before it): a detecting read of
    smaller p-value; where neither detects, the ``fallback`` hypothesis's read (the denoised one: by
    design the most bits right where the mark is weak), else the read tried first."""
    da, db = k * a[1].p < alpha, k * b[1].p < alpha
    if da != db:
        return da
    return a[1].p < b[1].p if da else (a[0].fallback and not b[0].fallback)


SMALL_SIDE = 192  # px: below this the blind read often misses (too few tile repeats)


def check_strength(strength: float) -> None:
    """ValueError (one line) unless 0 < strength <= ``STRIP_MAX_RMS`` (what strip can still remove)."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= STRIP_MAX_RMS:
        raise ValueError(f"strength must be a number in (0, {STRIP_MAX_RMS:g}], got {strength!r}")


TRAIT_PIXELS = 1 << 22  # cover_traits reads every s-th pixel per side of larger images, s the least that fits


def cover_traits(x: torch.Tensor) -> tuple[str, ...]:
    """What in cover x [1, C, H, W] keeps a mark from being found: saturated, small or flat
    (phrases for :func:`undetectable_reason`; empty where none)."""
    h, w = x.shape[-2:]
    s = max(1, math.ceil(math.sqrt(h * w / TRAIT_PIXELS)))
    x = x[..., ::s, ::s]
    why = []
    lo, hi = x.amin(1), x.amax(1)
    near = float(((lo < 0.05) | (hi > 0.95)).float().mean())
    if near > 0.5:
        why.append(f"saturated ({near:.0%} of pixels near black or white, where the mark is kept off)")
    if min(h, w) < SMALL_SIDE:
        why.append(f"small ({w}x{h} px; reliably found from {SMALL_SIDE} px per side)")
    if float(luma(x).std()) < 0.02:
        why.append("flat (almost no image content)")
    return tuple(why)


def undetectable_reason(traits: Sequence[str], d: Detection, payload: bytes) -> str:
    """Why a mark embedded in a cover of :func:`cover_traits` ``traits`` is not found by detection
    ``d`` (one line)."""
    why = list(traits) or ["weak read"]
    if d.detected and d.payload != payload:
        got = f"another payload read ({d.payload_hex})"
    else:
        got = f"p = {d.p_value:.2g}, needs < {d.alpha:g}"
    return "; ".join(why) + f": {got}"


_CACHE: dict[str, ImageWatermarker] = {}


def load(name: str = "default", device: str | None = None) -> ImageWatermarker:
    """The shipped model ``name`` (cached per process)."""
    k = f"{name}@{device}"
    if k not in _CACHE:
        _CACHE[k] = ImageWatermarker.load(name, device)
    return _CACHE[k]


def embed(images, key, payload=None, model: str = "default", strength: float = 1.0) -> Embedded:
    """Mark images with the shipped model (see :meth:`ImageWatermarker.embed`)."""
    return load(model).embed(images, key, payload, strength=strength)


def detect(images, key, payload=None, alpha: float = DEFAULT_ALPHA,
           model: str = "default") -> Detection | list[Detection]:
    """Detect with the shipped model (see :meth:`ImageWatermarker.detect`: one :class:`Detection` for
    one image, a list for a list or a batch tensor)."""
    return load(model).detect(images, key, payload, alpha)


def strip(images, key, payload=None, model: str = "default") -> Stripped:
    """Strip with the shipped model (see :meth:`ImageWatermarker.strip`)."""
    return load(model).strip(images, key, payload)
