"""The image watermarker: training forward pass and inference ``embed`` / ``detect`` / ``strip``.

Functional core (pure, no hidden state): :func:`residual`, :func:`read_logits`, :func:`strip_tensor`.
:class:`ImageWatermarker` holds the networks, the keyed code (:mod:`wmark.codes`) and settings, loads
shipped weights and converts PIL / numpy / tensors. Shapes for the defaults (n = 128 carried bits,
6-byte payload, tile t = 32 working px = 64 native px, S = t * t cyclic shifts)::

    embed   payload -> codeword bits [n] -> encoder tile [1, 1, 64, 64], repeated over the image,
            weighted by the perceptual mask, scaled to RMS ``rms`` -> residual [B, 1, H, W],
            added to every channel
    read    image [B, C, H, W] (centre crop <= MAX_DECODE_SIDE) -> prefilter features
            [B, 4, H/2, W/2] folded to [B, 4, t, t] -> logits at every shift [B, n, S] -> logits
            [B, n] at the shift of largest energy (both minus the null bias)
    decide  payload unknown: min(union bound over the 2**48 codewords for the RS-decoded one,
            exact binomial tail against the default payload's codeword) x 2, so marks made without
            a payload detect at full strength; payload known: exact binomial tail against its
            codeword at the key-blind shift and at the shift that agrees best with it (x S), x 2
    search  p-value x K hypotheses (5 blind, 7 with a known payload): as given; best 2x2 pooling
            phase; rotation / scale from the tile lattice; mirrored; the raw read summed with reads
            low-passed at DENOISE_SIGMAS (known payload: each low-passed read too), made only where
            the raw read does not detect or agrees on fewer than RECHECK_AGREE of its bits

Blind, where no hypothesis detects, the bits reported are the summed read's at the image's own tile
origin unless another shift scores clearly higher (:func:`report_logits`): heavy noise hides the
alignment long before it erases the bits. They are not a hypothesis, so no p-value depends on them.
"""
from __future__ import annotations

import math
import io as _io
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from wmark.codes import PayloadCode, known_payload_pvalue, parse_payload
from wmark.image import io as imio
from wmark.image.nets import (Decoder, Encoder, apply_residual, best_shift_logits, bits_to_signs, fold,
                              gaussian_blur, luma, perceptual_mask, resize, shape_residual, standardize)
from wmark.stats import bonferroni

DEFAULT_ALPHA = 1e-3


# -- results -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Detection:
    """Detection result for one image.

    ``bits`` [n] carried hard bits read by the decoder; ``confidence`` [n] per-bit confidence in
    [0, 1] (|2 sigmoid(logit) - 1|); ``payload`` the RS-decoded payload (None if decoding failed);
    ``p_value`` for "marked under this key"; ``detected`` = p_value < alpha."""

    detected: bool
    p_value: float
    payload: bytes | None
    bits: np.ndarray = field(repr=False)
    confidence: np.ndarray = field(repr=False)
    agree: int = 0
    n_bits: int = 0
    n_corrected: int = 0
    alpha: float = DEFAULT_ALPHA

    @property
    def payload_hex(self) -> str | None:
        return None if self.payload is None else self.payload.hex()

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the scalar fields (``payload`` as hex or None; not ``bits`` / ``confidence``)."""
        return {"detected": bool(self.detected), "p_value": float(self.p_value), "payload": self.payload_hex,
                "agree": int(self.agree), "n_bits": int(self.n_bits), "n_corrected": int(self.n_corrected),
                "alpha": float(self.alpha)}


@dataclass(frozen=True)
class Embedded:
    """Marked images (same type and layout as the input) and the carried bits [n]."""

    images: Any
    payload: bytes
    bits: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class Stripped:
    """Images with the mark removed (same type as the input); ``removed[i]`` False where no payload
    could be read (image returned unchanged); ``before`` the detections that drove removal."""

    images: Any
    removed: tuple[bool, ...]
    before: tuple[Detection, ...] = field(repr=False)


# -- functional core ---------------------------------------------------------------------------
def residual(encoder: nn.Module, x: torch.Tensor, signs: torch.Tensor, rms: float) -> torch.Tensor:
    """Cover x [B, C, H, W] and message signs [B, n] (or [1, n]) -> luminance residual [B, 1, H, W]."""
    tile = encoder(signs)
    if tile.shape[0] != x.shape[0]:
        tile = tile.expand(x.shape[0], -1, -1, -1)
    return shape_residual(tile, perceptual_mask(x), rms)


MAX_DECODE_SIDE = 1536  # larger images are centre-cropped for decoding (crops cost nothing: see nets)


def decode_view(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = min(h, MAX_DECODE_SIDE), min(w, MAX_DECODE_SIDE)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return x[..., y0:y0 + ch, x0:x0 + cw]


def read_logits(decoder: nn.Module, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Image [B, C, H, W] (any size >= 64 px) -> bit logits [B, n] at the best cyclic shift (minus the
    null bias when given). Differentiable in x (the shift choice is not)."""
    logits = decoder(decode_view(x))
    return logits if bias is None else logits - bias


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


ANGLE_REFINE = (-0.4, -0.2, 0.0, 0.2, 0.4)  # degrees around the lattice estimate
PHASES = ((0, 1), (1, 0), (1, 1))  # native-pixel offsets tried besides (0, 0): the 2x2 pooling phase
N_HYPOTHESES = 4  # as given; best pooling phase; geometry estimated from the tile lattice; mirrored
LATTICE_MIN = 1.75  # lattice score below which no search is tried (unmarked crops: max 1.67 at 64 px)
DENOISE_SIGMAS = (0.8, 1.6)  # native px: Gaussian pre-filters also read (blind: summed with the raw read)
RECHECK_AGREE = 0.9  # a detection whose bits agree with its codeword less than this reads the low-passed views too
ORIGIN_MARGIN = 3.0  # blind bits where nothing detects: the uncropped alignment unless another scores this many
# robust standard deviations (of the scores over all shifts) higher; chosen on the training photos, not Kodak


def denoise_view(y: torch.Tensor, sigma: float) -> torch.Tensor:
    """Luminance y [B, 1, H, W] low-passed by a Gaussian of ``sigma`` native px (same shape): trades the
    mark's highest frequencies for much less broadband noise."""
    return gaussian_blur(y, sigma, "reflect")


def combine_views(shifts: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits at every cyclic shift of several views of the same image, each [B, n, S] -> (logits
    [B, n] at the shift of largest combined energy, combined logits [B, n, S]). Each view is divided
    by the square root of its median shift energy (its scale where no alignment stands out) before
    summing; the sum is rescaled to the first view's scale. Key-blind, so the bits stay uniform under
    the null."""
    def med(a: torch.Tensor) -> torch.Tensor:  # [B, 1, 1]
        return a.pow(2).sum(1).median(-1).values.clamp_min(1e-12).view(-1, 1, 1)

    total = sum(a / med(a).sqrt() for a in shifts)
    total = total * (med(shifts[0]) / med(total)).sqrt()
    return best_shift_logits(total), total


def alignment_scores(shifts: torch.Tensor) -> torch.Tensor:
    """Logits at every cyclic shift [B, n, S] -> a key-blind score per shift [B, S]: the sum over bits
    of log cosh(logit / m), m the image's median |logit|. Like the energy near 0 but only linear in
    large logits, so a few big responses to image content weigh less than many bits read clearly."""
    m = shifts.abs().flatten(1).median(-1).values.clamp_min(1e-12).view(-1, 1, 1)
    a = (shifts / m).abs()
    return (a + torch.nn.functional.softplus(-2 * a) - math.log(2)).sum(1)


def origin_shift(size: Sequence[int], view: Sequence[int], factor: int, tile: int) -> int | None:
    """Index (into the t * t cyclic shifts) where an image of ``size`` (H, W), read through its centred
    view of ``view`` (h, w), has its tile origin if it was not cropped (None where the view's offset
    falls between working pixels)."""
    y0, x0 = (size[0] - view[0]) // 2, (size[1] - view[1]) // 2
    if y0 % factor or x0 % factor:
        return None
    return (y0 // factor % tile) * tile + x0 // factor % tile


def report_logits(shifts: torch.Tensor, origin: int | None, margin: float | None = None) -> torch.Tensor:
    """Logits [B, n] reported by a blind read where no hypothesis detects, from the logits at every
    shift [B, n, S]: at the image's own tile origin (see :func:`origin_shift`; most images are not
    cropped) unless another shift's :func:`alignment_scores` beats the origin's by over ``ORIGIN_MARGIN``
    robust standard deviations (1.4826 x the median absolute deviation of the scores over shifts;
    ``margin`` overrides it), else at the shift of best score. Key-blind. The margin's choice:
    ``bench/origin_margin.py``."""
    sc = alignment_scores(shifts)  # [B, S]
    idx = sc.argmax(-1)
    if origin is not None:
        med = sc.median(-1, keepdim=True).values
        spread = 1.4826 * (sc - med).abs().median(-1).values.clamp_min(1e-12)
        keep = sc[:, origin] + (ORIGIN_MARGIN if margin is None else margin) * spread >= sc.max(-1).values
        idx = torch.where(keep, torch.full_like(idx, origin), idx)
    return shifts.gather(2, idx.view(-1, 1, 1).expand(-1, shifts.shape[1], 1)).squeeze(-1)


def phase_views(y: torch.Tensor) -> list[torch.Tensor]:
    """The other pooling phases of y [B, 1, H, W]: views shifted by one native pixel (odd crop
    offsets put the tile half a working pixel off the decoder's grid)."""
    return [y[..., py:, px:] for py, px in PHASES]


def strip_tensor(encoder: nn.Module, y: torch.Tensor, signs: torch.Tensor, rms: float,
                 iters: int = 6) -> torch.Tensor:
    """Remove the residual of ``signs`` from marked y [B, C, H, W]: fixed point x = y - r(x)."""
    x = y
    for _ in range(iters):
        x = (y - residual(encoder, x, signs, rms)).clamp(0, 1)
    return x


def _best(cands: list[Detection], fallback: Callable[[], Detection] | None) -> Detection:
    """The candidate of smallest p-value; where none detects and a ``fallback`` read is given (made only
    then), that read's bits (and decoding; not a hypothesis, so never detected and no payload) with the
    smallest p-value."""
    best = min(cands, key=lambda c: c.p_value)
    if best.detected or fallback is None:
        return best
    return replace(fallback(), p_value=best.p_value, detected=False, payload=None)


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

    # -- inference -----------------------------------------------------------------------------
    def _signs(self, payload, key, b: int) -> tuple[torch.Tensor, np.ndarray, bytes]:
        data = parse_payload(payload, self.code.data_bytes)
        bits = self.code.encode(data, key)
        signs = bits_to_signs(torch.from_numpy(bits.astype(np.float32))).to(self.device)
        return signs.expand(b, -1), bits, data

    @torch.no_grad()
    def embed_tensor(self, x: torch.Tensor, key, payload=None) -> torch.Tensor:
        """Mark x [B, C, H, W] in [0, 1] (C = 1 or 3) -> marked [B, C, H, W]."""
        self.eval()
        x = x.to(self.device)
        signs, _, _ = self._signs(payload, key, x.shape[0])
        return apply_residual(x, residual(self.encoder, x, signs[:1], self.config.rms))

    @torch.no_grad()
    def logits_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Bit logits [B, n] of images x [B, C, H, W]."""
        self.eval()
        return read_logits(self.decoder, x.to(self.device), self.null_bias)

    def _decide(self, lg: np.ndarray, key, payload=None, alpha: float = DEFAULT_ALPHA, mult: int = 1,
                shifts: np.ndarray | None = None) -> Detection:
        """Logits [n] of one image -> Detection; the p-value is multiplied by ``mult`` (Bonferroni over
        the geometric hypotheses searched). ``shifts`` [n, S]: the logits at every cyclic shift, used
        with a known ``payload`` to test the shift that agrees best with its codeword (x S); the bits
        reported are that shift's only where that test detects (the best of S shifts agrees with any
        codeword about 64% of the time, so elsewhere the key-blind shift's bits are kept)."""
        n = self.code.n_bits
        if payload is not None:
            expected = self.code.encode(payload, key)
            agree = int((expected == (lg > 0)).sum())
            p = float(known_payload_pvalue(agree, n))
            if shifts is not None:  # the codeword's own alignment: best of S shifts, Bonferroni x S, x2
                agree_s = ((shifts > 0) == expected[:, None].astype(bool)).sum(0)
                j = int(agree_s.argmax())
                p_s = float(known_payload_pvalue(int(agree_s[j]), n)) * shifts.shape[1]
                if p_s < p and 2.0 * p_s * mult < alpha:  # report that alignment's bits only when it detects
                    lg, agree = shifts[:, j], int(agree_s[j])
                p = 2.0 * min(p, p_s)
        hard = (lg > 0).astype(np.uint8)
        conf = np.abs(np.tanh(lg / 2))  # |2 sigmoid - 1|
        r = self.code.decode(hard, key, conf)
        if payload is not None:
            p = float(bonferroni(p, mult))
            return Detection(p < alpha, p, r.payload, hard, conf, agree, n, r.n_corrected, alpha)
        # unknown payload: the best of (any RS codeword, union bound) and (the default all-zero
        # payload, exact binomial), Bonferroni x2 -- marks made without a payload detect strongly
        ref = self.code.encode(None, key)
        agree0 = int((ref == hard).sum())
        p0 = float(known_payload_pvalue(agree0, n))
        if p0 < r.p_value:
            p, payload_read, agree = p0, bytes(self.code.data_bytes), agree0
        else:
            p, payload_read, agree = r.p_value, r.payload, r.agree
        p = float(bonferroni(p, 2 * mult))
        return Detection(p < alpha, p, payload_read if p < alpha else None, hard, conf, agree, n, r.n_corrected,
                         alpha)

    def _detect_logits(self, logits: torch.Tensor, key, payload=None, alpha: float = DEFAULT_ALPHA,
                       mult: int = 1, shifts: torch.Tensor | None = None) -> list[Detection]:
        """Logits [B, n] (and optionally those at every shift [B, n, S]) -> one Detection per image."""
        lg = logits.detach().cpu().double().numpy()
        sh = None if shifts is None or payload is None else shifts.detach().cpu().double().numpy()
        return [self._decide(lg[i], key, payload, alpha, mult, None if sh is None else sh[i])
                for i in range(lg.shape[0])]

    def read_all(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Prefilter output [B, C, h, w] -> (logits [B, n] at the shift of largest energy, logits at
        every cyclic shift [B, n, t * t]), both minus the null bias (same numbers as :meth:`logits_tensor`)."""
        al = self.decoder.all_shifts(standardize(fold(features, self.config.tile)))
        return best_shift_logits(al) - self.null_bias, (al - self.null_bias.view(1, -1, 1, 1)).flatten(2)

    def low_passed_reads(self, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`read_all` of luminance y [B, 1, H, W] low-passed by each of ``DENOISE_SIGMAS``."""
        return [self.read_all(self.decoder.features(denoise_view(y, sigma))) for sigma in DENOISE_SIGMAS]

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

    def _scored(self, features: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """Prefilter output [1, C, h, w] -> (peak ratio, logits [1, n] at the best cyclic shift, logits
        at every shift [1, n, t * t]), logits minus the null bias.

        The peak ratio = the largest logit energy over cyclic shifts / its median: about 1-2 without
        a mark (or under the wrong geometry) and large when one alignment stands out. Unlike the raw
        energy it does not grow with the view's size or smoothness, and it ignores the signs and the
        key (so choosing among views by it keeps the bits uniform under the null)."""
        al = self.read_all(features)[1]  # [1, n, t * t]
        e = al.pow(2).sum(1)[0]  # [t * t]
        i = int(e.argmax())
        return float(e[i] / e.median().clamp_min(1e-12)), al[..., i], al

    def _pick(self, views: list[torch.Tensor]) -> tuple[int, float, torch.Tensor, torch.Tensor]:
        """(index, peak ratio, logits [1, n], logits at every shift [1, n, t * t]) of the view with the
        largest peak ratio."""
        scored = [self._scored(self.decoder.features(v)) for v in views]
        j = int(np.argmax([sc[0] for sc in scored]))
        return (j, *scored[j])

    def _geometry_logits(self, y: torch.Tensor, ang: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [1, n] (and at every shift [1, n, t * t]) of luminance y [1, 1, H, W] with the
        estimated rotation / scale undone. Each choice is by peak ratio (sign- and key-blind): the
        estimate or a square-lattice alias (theta + 45, scale * or / sqrt 2, sharing half the
        lattice's peaks); the angle (+-0.4 deg, and theta -+ 90 near +-45, which the lattice cannot
        tell apart); the scale (+-0.3%, or exactly 1 when close); the pooling phase. ``ang`` /
        ``scale``: the lattice estimate (:meth:`estimate_geometry`)."""
        alias = ang - 45 if ang > 0 else ang + 45
        cands = [(ang, scale)] + [(alias, scale * f) for f in (2 ** 0.5, 2 ** -0.5) if 0.45 <= scale * f <= 1.6]
        ang, scale = cands[self._pick([geometry_view(y, a, s) for a, s in cands])[0]]
        angles = [ang + da for da in ANGLE_REFINE]
        if abs(ang) > 40:
            angles.append(ang - 90 * math.copysign(1, ang))
        ang = angles[self._pick([geometry_view(y, a, scale) for a in angles])[0]]
        scales = [scale, scale * 0.997, scale * 1.003] + ([1.0] if abs(scale - 1) < 0.008 else [])
        views = [geometry_view(y, ang, s) for s in scales]
        j, r, lg, sh = self._pick(views)
        _, r_phase, lg_phase, sh_phase = self._pick(phase_views(views[j]))
        return (lg, sh) if r >= r_phase else (lg_phase, sh_phase)

    @torch.no_grad()
    def _detect_search(self, x: torch.Tensor, key, payload=None, alpha: float = DEFAULT_ALPHA) -> list[Detection]:
        """Detection over ``N_HYPOTHESES`` hypotheses: the image as given; the 2x2 pooling phase of
        largest peak ratio (odd crop offsets; only when the lattice shows no rotation / scale);
        undoing the rotation and scale estimated from the peaks of the tile lattice in its spectrum
        (best phase again); mirrored. Reports the best p-value times the number of hypotheses (valid
        for any stopping rule: each hypothesis is chosen without the key). The image as given is kept if it reads a codeword without a bit error or if
        its spectrum shows no tile lattice (score < ``LATTICE_MIN``: unmarked images stay cheap); the
        search stops at the first hypothesis that detects. Crops and translations by even offsets need
        no hypothesis: the decoder is invariant to them. Heavy noise hides the alignment and the lattice
        alike, so where the image as given does not detect, or detects with fewer than
        ``RECHECK_AGREE`` of its bits agreeing with the codeword, the image low-passed by each of
        ``DENOISE_SIGMAS`` is read too, before the lattice gate, and those reads are summed with the raw
        one (:func:`combine_views`). Blind, the sum is one more hypothesis, and where no hypothesis
        detects the bits reported are the sum's at the tile origin or best-scoring shift
        (:func:`report_logits`; the most bits right under noise). With a known ``payload``, the sum and
        each low-passed read are hypotheses at the codeword's best alignment (``1 +
        len(DENOISE_SIGMAS)`` more)."""
        self.eval()
        x = x.to(self.device)
        k = N_HYPOTHESES + 1 + (len(DENOISE_SIGMAS) if payload is not None else 0)
        y = decode_view(luma(x))
        origin = origin_shift(x.shape[-2:], y.shape[-2:], self.config.factor, self.config.tile)
        feats = self.decoder.features(y)
        lg0, sh0 = self.read_all(feats)
        first = self._detect_logits(lg0, key, payload, alpha, k, sh0)
        out = []
        for i, d in enumerate(first):
            if d.detected and d.agree == d.n_bits:
                out.append(d)
                continue
            yi = y[i:i + 1]
            cands, fallback = [d], None
            if not d.detected or d.agree < RECHECK_AGREE * d.n_bits:  # low-passed reads: noisy images only
                denoised = self.low_passed_reads(yi)
                lg, sh = combine_views([sh0[i:i + 1]] + [s for _, s in denoised])  # raw + low-passed, summed
                if payload is None:  # blind: one hypothesis; the bits reported where none detects
                    cands.append(self._detect_logits(lg, key, None, alpha, k)[0])
                    rl = report_logits(sh, origin)  # decoded only where no hypothesis detects
                    fallback = lambda rl=rl: self._detect_logits(rl, key, None, alpha, k)[0]  # noqa: E731
                else:  # verification: the sum and each low-passed read at the codeword's best alignment
                    cands += [self._detect_logits(lgv, key, payload, alpha, k, shv)[0]
                              for lgv, shv in [(lg, sh), *denoised]]
            ang, scale, score = self.estimate_geometry(yi, feats[i:i + 1])
            if score < LATTICE_MIN:  # no tile lattice in the spectrum: nothing to align (key-blind gate)
                out.append(_best(cands, fallback))
                continue
            geometric = abs(ang) > 0.05 or abs(scale - 1) > 0.004
            if not geometric:  # odd crop offsets: the best 2x2 pooling phase
                r0 = self._scored(feats[i:i + 1])[0]
                _, r1, lg1, sh1 = self._pick(phase_views(yi))
                if r1 > r0:
                    cands.append(self._detect_logits(lg1, key, payload, alpha, k, sh1)[0])
            if not any(c.detected for c in cands):
                reads = [self.read_all(self.decoder.features(yi.flip(-1)))]
                if geometric:
                    reads.append(self._geometry_logits(yi, ang, scale))
                cands += [self._detect_logits(lg, key, payload, alpha, k, sh)[0] for lg, sh in reads]
            out.append(_best(cands, fallback))
        return out

    def embed(self, images, key, payload: bytes | str | int | None = None) -> Embedded:
        """Mark images (tensor [B, C, H, W] / [C, H, W] in [0, 1], PIL, numpy, :class:`~wmark.image.io.Image16`,
        or a list of them)."""
        imio.check_key(key)
        xs, metas, single = imio.to_internal(images)
        marked = [self.embed_tensor(x, key, payload).cpu() for x in xs]
        outs = imio.from_internal(marked, metas)
        _, bits, data = self._signs(payload, key, 1)
        return Embedded(outs[0] if single or isinstance(images, torch.Tensor) else outs, data, bits)

    def detect(self, images, key, payload: bytes | str | int | None = None,
               alpha: float = DEFAULT_ALPHA, search: bool = True) -> Detection | list[Detection]:
        """Detect the mark of ``key``. The return type follows the input kind: one image (PIL image,
        numpy [H, W] / [H, W, C], tensor [C, H, W], file path) gives one :class:`Detection`; a list /
        tuple of images or a batch tensor [B, C, H, W] (even B = 1) gives ``list[Detection]``, one per
        image in order (a batch tensor inside a list contributes B entries).

        ``search`` also tries the other 2x2 pooling phases, the rotation / scale estimated from the
        mark's tile lattice, a mirror image and the raw + low-passed reads summed (5 hypotheses,
        Bonferroni-corrected) when the image as given does not read cleanly; ``payload`` tests one
        known payload (exact binomial tail, at the key-blind shift and at the shift that agrees best
        with its codeword; the low-passed reads and their sum are then 3 hypotheses: see the module doc)."""
        imio.check_key(key)
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        xs, _, single = imio.to_internal(images)
        dets: list[Detection] = []
        for x in xs:
            if search:
                dets.extend(self._detect_search(x, key, payload, alpha))
            elif payload is None:
                dets.extend(self._detect_logits(self.logits_tensor(x), key, payload, alpha))
            else:
                with torch.no_grad():
                    self.eval()
                    lg, sh = self.read_all(self.decoder.features(decode_view(x.to(self.device))))
                dets.extend(self._detect_logits(lg, key, payload, alpha, shifts=sh))
        return dets[0] if single else dets

    @torch.no_grad()
    def strip_tensor(self, y: torch.Tensor, key, payload=None, iters: int = 6) -> tuple[torch.Tensor, list[bool], list[Detection]]:
        """Remove the mark from y [B, C, H, W]; payload read from the image unless given."""
        self.eval()
        y = y.to(self.device)
        dets = self._detect_logits(self.logits_tensor(y), key, None)
        out = y.clone()
        removed = []
        c = self.config
        for i, d in enumerate(dets):
            pl = payload if payload is not None else d.payload
            if pl is None:
                removed.append(False)
                continue
            signs, _, _ = self._signs(pl, key, 1)
            out[i:i + 1] = strip_tensor(self.encoder, y[i:i + 1], signs[:1], c.rms, iters)
            removed.append(True)
        return out, removed, dets

    def strip(self, images, key, payload: bytes | str | int | None = None, iters: int = 6) -> Stripped:
        """Key-holder removal: re-estimate the residual from the marked image and the decoded payload,
        subtract it, iterate to a fixed point. Images where no payload is found come back unchanged."""
        imio.check_key(key)
        xs, metas, single = imio.to_internal(images)
        outs, removed, before = [], [], []
        for x in xs:
            o, r, d = self.strip_tensor(x, key, payload, iters)
            outs.append(o.cpu()), removed.extend(r), before.extend(d)
        imgs = imio.from_internal(outs, metas)
        return Stripped(imgs[0] if single or isinstance(images, torch.Tensor) else imgs, tuple(removed), tuple(before))


_CACHE: dict[str, ImageWatermarker] = {}


def load(name: str = "default", device: str | None = None) -> ImageWatermarker:
    """The shipped model ``name`` (cached per process)."""
    k = f"{name}@{device}"
    if k not in _CACHE:
        _CACHE[k] = ImageWatermarker.load(name, device)
    return _CACHE[k]


def embed(images, key, payload=None, model: str = "default") -> Embedded:
    """Mark images with the shipped model (see :meth:`ImageWatermarker.embed`)."""
    return load(model).embed(images, key, payload)


def detect(images, key, payload=None, alpha: float = DEFAULT_ALPHA,
           model: str = "default") -> Detection | list[Detection]:
    """Detect with the shipped model (see :meth:`ImageWatermarker.detect`: one :class:`Detection` for
    one image, a list for a list or a batch tensor)."""
    return load(model).detect(images, key, payload, alpha)


def strip(images, key, payload=None, model: str = "default") -> Stripped:
    """Strip with the shipped model (see :meth:`ImageWatermarker.strip`)."""
    return load(model).strip(images, key, payload)
