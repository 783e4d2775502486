"""Encoder / decoder networks and the pure tensor functions around them (tiled, shift-invariant design).

Conventions: images are float tensors in [0, 1], ``[B, C, H, W]`` (C = 1 or 3); the mark lives in
luminance (the same residual is added to every colour channel).

The mark is a **periodic tile**: the encoder maps the 128 coded message signs to one ``P x P`` tile
(P = ``factor * tile``, 64 px by default, built with circular convolutions so it is seamless); the
tile is repeated over the whole image at its native resolution, weighted by a perceptual mask and
scaled to a fixed RMS. Any size >= 64 px and any aspect ratio works without resizing the image.

The decoder (1) downsamples luminance by ``factor`` to a working grid, (2) runs a small fully
convolutional *prefilter* that estimates the mark and suppresses image content, (3) **folds** the
estimate modulo the tile period (the mean over all repeats: image content averages out, the tile
adds up), and (4) correlates the folded ``tile x tile`` map with one learned pattern per bit. A crop
only shifts the tile cyclically, so step (4) is evaluated for every cyclic shift at once with FFTs and
the shift with the largest logit energy is kept: cropping, padding and translation cost nothing.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from wmark.assets import luma


# -- pure functions ----------------------------------------------------------------------------
def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of [B, C, H, W] to ``size`` = (h, w)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def gaussian_blur(x: torch.Tensor, sigma: float, border: str = "replicate") -> torch.Tensor:
    """Gaussian filter of ``sigma`` px (kernel 2 ceil(3 sigma) + 1, kornia), [B, C, H, W] -> same."""
    from kornia.filters import gaussian_blur2d

    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur2d(x, (k, k), (sigma, sigma), border_type=border)


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean filter with a k x k window (replicate padding), [B, C, H, W] -> same."""
    p = k // 2
    x = F.pad(x, (p, p, p, p), mode="replicate")
    return F.avg_pool2d(x, k, stride=1)


def box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k x k mean of :func:`box_blur` (replicate padding), [B, C, H, W] -> same, at a cost
    independent of k: separable prefix sums (``torch.cumsum``) in float64, so a window of any size
    costs a few operations per pixel and the result matches the direct mean to float32 rounding."""
    p = k // 2
    z = F.pad(x, (p, p, p, p), mode="replicate").double()
    grad = torch.is_grad_enabled() and x.requires_grad
    for dim in (-2, -1):  # prefix sums with a leading zero, then differences k apart
        n = z.shape[dim]
        if grad:  # autograd cannot write into a preallocated buffer
            c = F.pad(z.cumsum(dim), (0, 0, 1, 0) if dim == -2 else (1, 0))
        else:
            c = z.new_zeros(*z.shape[:dim], n + 1, *z.shape[dim:][1:])
            torch.cumsum(z, dim, out=c.narrow(dim, 1, n))
        z = c.narrow(dim, k, n + 1 - k) - c.narrow(dim, 0, n + 1 - k)
        del c
    return (z / (k * k)).to(x.dtype)


def mask_window(h: int, w: int) -> int:
    """The perceptual mask's window (odd, px): about 1% of the short side, at least 3."""
    return max(3, (min(h, w) // 100) | 1)


def mask_halo(k: int) -> int:
    """Rows (or columns) of input either side that one output row of :func:`perceptual_mask` with
    window k reads: two box means of k // 2 each."""
    return 2 * (k // 2)


def perceptual_mask(x: torch.Tensor, floor: float = 0.15, tau: float = 0.04, guard: float = 0.05,
                    k: int | None = None) -> torch.Tensor:
    """Where a residual may go: [B, C, H, W] image -> [B, 1, H, W] weights in [0, 1].

    Local standard deviation of luminance (window ``k``, default :func:`mask_window`, ~ 1% of the
    short side) divided by ``tau``, clipped to [floor, 1] (flat regions get ``floor``), smoothed
    (the same window), times a saturation guard ``min(x, 1 - x) / guard`` (over channels) so the
    mark never clips at black or white. Cost linear in pixels whatever the window (:func:`box_mean`).
    Output row i depends on input rows i +- 2 (k // 2) only (:func:`mask_halo`)."""
    y = luma(x)
    k = mask_window(*y.shape[-2:]) if k is None else k
    chans = [x[:, c:c + 1] for c in range(x.shape[1])]  # elementwise: faster than a reduction over dim 1
    lo, hi = chans[0], chans[0]
    for c in chans[1:]:
        lo, hi = torch.minimum(lo, c), torch.maximum(hi, c)
    if torch.is_grad_enabled() and x.requires_grad:  # training: out of place, for autograd
        mu = box_mean(y, k)
        act = ((box_mean(y * y, k) - mu * mu).clamp_min(0).add(1e-8).sqrt() / tau).clamp(floor, 1.0)
        return box_mean(act, k) * (torch.minimum(lo, 1 - hi) / guard).clamp(0, 1)
    mu = box_mean(y, k)  # inference: in place, fewer full-size temporaries
    var = box_mean(y * y, k).sub_(mu * mu).clamp_min_(0)
    del mu
    act = box_mean(var.add_(1e-8).sqrt_().div_(tau).clamp_(floor, 1.0), k)
    return act.mul_(torch.minimum(lo, 1 - hi).div_(guard).clamp_(0, 1))


def tile_to(tile: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Repeat a periodic tile [B, 1, P, P] over an ``size`` = (H, W) canvas (phase 0 at the top-left)."""
    p = tile.shape[-1]
    h, w = size
    reps = (-(-h // p), -(-w // p))
    return tile.repeat(1, 1, *reps)[..., :h, :w]


def shape_residual(tile: torch.Tensor, mask: torch.Tensor, rms: float) -> torch.Tensor:
    """Tile [B, 1, P, P] over the mask's size, weight by the mask [B, 1, H, W] and scale each image
    to root-mean-square ``rms`` -> [B, 1, H, W]."""
    r = tile_to(tile, tuple(mask.shape[-2:])) * mask
    norm = r.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-12).sqrt()
    return r * (rms / norm)


def apply_residual(x: torch.Tensor, r: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Add a luminance residual [B, 1, H, W] to every colour channel of x [B, C, H, W], clamp to [0, 1]
    (into ``out`` where given, which may be x itself; not for autograd)."""
    if out is None:
        return (x + r).clamp(0, 1)
    return torch.add(x, r, out=out).clamp_(0, 1)


def bits_to_signs(bits: torch.Tensor) -> torch.Tensor:
    """{0, 1} bits [B, n] -> {-1, +1} float [B, n]."""
    return bits.float() * 2 - 1


def working_luma(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Image [B, C, H, W] -> luminance averaged over ``factor x factor`` blocks [B, 1, H//f, W//f]."""
    y = luma(x)
    return F.avg_pool2d(y, factor) if factor > 1 else y


def fold(e: torch.Tensor, t: int) -> torch.Tensor:
    """Mean over all period-``t`` repeats: [B, C, h, w] -> [B, C, t, t] (position (u, v) averages
    every e[..., i, j] with i = u, j = v mod t)."""
    b, c, h, w = e.shape
    ph, pw = (-h) % t, (-w) % t
    ones = e.new_ones(1, 1, h, w)
    if ph or pw:
        e = F.pad(e, (0, pw, 0, ph))
        ones = F.pad(ones, (0, pw, 0, ph))
    nh, nw = e.shape[-2] // t, e.shape[-1] // t
    s = e.view(b, c, nh, t, nw, t).sum(dim=(2, 4))
    n = ones.view(1, 1, nh, t, nw, t).sum(dim=(2, 4))
    return s / n.clamp_min(1)


def standardize(m: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit RMS per image (over all but the batch dim)."""
    dims = tuple(range(1, m.dim()))
    m = m - m.mean(dim=dims, keepdim=True)
    return m / m.pow(2).mean(dim=dims, keepdim=True).add(1e-12).sqrt()


def shifted_correlations(m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Correlation of folded maps m [B, C, t, t] with patterns w [K, C, t, t] at every cyclic shift:
    out[b, k, s0, s1] = sum_{c,u,v} w[k, c, u, v] * m[b, c, u - s0, v - s1] (indices mod t)
    = <roll(m[b], (s0, s1)), w[k]> -> [B, K, t, t]."""
    fm = torch.fft.rfft2(m)  # [B, C, t, t//2+1]
    fw = torch.fft.rfft2(w)  # [K, C, t, t//2+1]
    prod = torch.einsum("kcuv,bcuv->bkuv", fw, fm.conj())
    return torch.fft.irfft2(prod, s=m.shape[-2:])


# -- modules -----------------------------------------------------------------------------------
class _CircUp(nn.Module):
    """x2 bilinear upsampling of a periodic map (circular padding so the seam stays continuous)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = F.pad(x, (1, 1, 1, 1), mode="circular")
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return x[..., 2:2 + 2 * h, 2:2 + 2 * w]


def _circ_conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="circular")


class Encoder(nn.Module):
    """signs [B, n] -> periodic tile [B, 1, P, P] with unit RMS (P = 4 * ``base``).

    Linear map to a ``ch x base x base`` map, two circular x2 upsampling + conv stages, 1x1 conv.
    The encoder does not look at the image: the image shapes the mark only through the perceptual
    mask, so the key-holder can invert the embedding exactly (strip)."""

    def __init__(self, n_bits: int = 128, period: int = 64, ch: int = 16):
        super().__init__()
        if period % 4:
            raise ValueError(f"tile period must be a multiple of 4, got {period}")
        self.base, self.ch = period // 4, ch
        self.msg = nn.Linear(n_bits, ch * self.base ** 2)
        self.body = nn.Sequential(_CircUp(), _circ_conv(ch, ch), nn.GELU(), _CircUp(), _circ_conv(ch, ch),
                                  nn.GELU(), _circ_conv(ch, 1, 1))

    def forward(self, signs: torch.Tensor) -> torch.Tensor:
        t = self.body(self.msg(signs).view(-1, self.ch, self.base, self.base))
        return standardize(t)


class Decoder(nn.Module):
    """Image [B, C, H, W] (any size) -> bit logits [B, n] at every cyclic shift, or at a given one.

    ``prefilter``: fully convolutional, working-grid luminance -> ``out_ch`` mark-estimate maps;
    ``fold`` modulo ``tile``; per-bit patterns ``weight`` [n, out_ch, tile, tile] and ``bias`` [n]."""

    def __init__(self, n_bits: int = 128, tile: int = 32, factor: int = 2, ch: int = 24, depth: int = 4,
                 out_ch: int = 4):
        super().__init__()
        self.tile, self.factor = tile, factor
        layers: list[nn.Module] = [nn.Conv2d(1, ch, 3, padding=1), nn.GELU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(ch, ch, 3, padding=1), nn.GELU()]
        layers.append(nn.Conv2d(ch, out_ch, 1))
        self.prefilter = nn.Sequential(*layers)
        self.weight = nn.Parameter(torch.randn(n_bits, out_ch, tile, tile) / (out_ch * tile * tile) ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_bits))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] -> prefilter output (mark estimate) [B, out_ch, H // f, W // f]."""
        y = working_luma(x, self.factor)
        return self.prefilter((y - box_blur(y, 5)) * 20.0)

    def folded(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, C, H, W] -> standardized folded mark estimate [B, out_ch, tile, tile]."""
        return standardize(fold(self.features(x), self.tile))

    def logits_at(self, m: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """Folded maps m [B, C, t, t] aligned by per-image shifts [B, 2] (working px) -> logits [B, n]."""
        rolled = torch.stack([torch.roll(m[i], (int(shift[i, 0]), int(shift[i, 1])), dims=(-2, -1))
                              for i in range(m.shape[0])])
        return torch.einsum("bcuv,kcuv->bk", rolled, self.weight) + self.bias

    def all_shifts(self, m: torch.Tensor) -> torch.Tensor:
        """Folded maps [B, C, t, t] -> logits at every cyclic shift [B, n, t, t] (bias included)."""
        return shifted_correlations(m, self.weight) + self.bias.view(1, -1, 1, 1)

    def read(self, e: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Prefilter output e [B, out_ch, h, w] -> bit logits [B, n] (see :meth:`forward`)."""
        m = standardize(fold(e, self.tile))
        if shift is not None:
            return self.logits_at(m, shift)
        return best_shift_logits(self.all_shifts(m))

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """Bit logits [B, n]; with ``shift`` None the cyclic shift of largest logit energy is used."""
        return self.read(self.features(x), shift)


def best_shift_logits(all_logits: torch.Tensor) -> torch.Tensor:
    """[B, n, t, t] (or [B, n, S]) logits at every shift -> [B, n] at the shift with the largest sum of
    squares."""
    b, n = all_logits.shape[:2]
    flat = all_logits.reshape(b, n, -1)
    idx = flat.detach().pow(2).sum(1).argmax(-1)  # [B]
    return flat.gather(2, idx.view(b, 1, 1).expand(b, n, 1)).squeeze(-1)


# -- geometry from the tile lattice ----------------------------------------------------------------
def lattice_points(tile_power: torch.Tensor, top: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``top`` strongest lattice frequencies of a tile: tile_power [P, P] (|rfft|**2 averaged
    over messages, unshifted fft2 layout) -> (points [top, 2] in cycles per tile (a_y, a_x) with
    a_y > 0 or (a_y = 0, a_x > 0) (half plane: real images have symmetric spectra), weights [top])."""
    p = tile_power.shape[-1]
    f = torch.fft.fftfreq(p, d=1.0 / p)  # integer frequencies -P/2..P/2-1
    ay, ax = torch.meshgrid(f, f, indexing="ij")
    half = (ay > 0) | ((ay == 0) & (ax > 0))
    w = torch.where(half, tile_power, torch.zeros_like(tile_power)).flatten()
    idx = w.topk(min(top, int(half.sum()))).indices
    pts = torch.stack([ay.flatten()[idx], ax.flatten()[idx]], -1)
    return pts, w[idx] / w[idx].sum()


def _lattice_score(white: torch.Tensor, points: torch.Tensor, weights: torch.Tensor, period: int,
                   angles: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Weighted mean of the whitened, fftshifted spectrum white [h, w] at the lattice frequencies for
    every (scale, angle) -> [S, A]."""
    ch, cw = white.shape
    th = torch.deg2rad(angles.to(white.dtype))
    cos, sin = torch.cos(th), torch.sin(th)
    a_y, a_x = points[:, 0].to(white.dtype), points[:, 1].to(white.dtype)
    # a lattice point (a_x, a_y) (x right, y down) of a pattern rotated counter-clockwise on screen by
    # theta moves to x' = x cos + y sin, y' = -x sin + y cos
    fx = a_x[None] * cos[:, None] + a_y[None] * sin[:, None]  # [A, N] cycles per tile
    fy = -a_x[None] * sin[:, None] + a_y[None] * cos[:, None]
    inv = 1.0 / (period * scales.to(white.dtype))  # [S]
    fx = fx[None] * inv[:, None, None]  # [S, A, N] cycles per pixel
    fy = fy[None] * inv[:, None, None]
    gx = ((fx * cw + cw // 2) + 0.5) / cw * 2 - 1  # grid_sample coordinates (align_corners=False)
    gy = ((fy * ch + ch // 2) + 0.5) / ch * 2 - 1
    grid = torch.stack([gx, gy], -1).reshape(1, -1, points.shape[0], 2)
    vals = F.grid_sample(white[None, None], grid, mode="bilinear", align_corners=False, padding_mode="zeros")
    return (vals.view(scales.numel(), angles.numel(), -1) * weights.to(white.dtype)).sum(-1)


def estimate_geometry(y: torch.Tensor, points: torch.Tensor, weights: torch.Tensor, period: int,
                      max_angle: float = 45.0, scale_range: tuple[float, float] = (0.45, 1.6),
                      max_side: int = 512, highpass: bool = True) -> tuple[float, float, float]:
    """Rotation and scale of a periodic mark from the peaks of the image spectrum.

    y [1, C, H, W] luminance (high-passed here unless ``highpass`` is False) or feature maps (their
    power spectra are summed); ``points`` / ``weights`` from :func:`lattice_points`. A mark rotated
    (kornia convention: degrees counter-clockwise) by theta and resized by s puts its energy at the
    frequencies R(theta) a / (period * s). Coarse grid (1 degree, 3% in scale) then a fine one
    (0.1 degree, 0.5%) around the best. Returns (theta, s, score): ``score`` is the weighted mean of
    the whitened power spectrum at those frequencies (about 1 without a mark)."""
    h, w = y.shape[-2:]
    ch, cw = min(h, max_side), min(w, max_side)
    y = y[..., (h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw].float()
    hp = y - box_blur(y, 5) if highpass else y
    win = (torch.hann_window(ch, periodic=False, dtype=y.dtype)[:, None]
           * torch.hann_window(cw, periodic=False, dtype=y.dtype)[None])
    spec = torch.fft.fftshift(torch.fft.fft2(hp[0] * win).abs().pow(2).sum(0))
    white = (spec / (box_mean(spec[None, None], 9)[0, 0] + 1e-12)).clamp(max=30.0)
    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    angles = torch.arange(-max_angle, max_angle + 0.5, 1.0)
    scales = torch.exp(torch.arange(lo, hi, 0.03))
    sc = _lattice_score(white, points, weights, period, angles, scales)
    si, ai = divmod(int(sc.argmax()), angles.numel())
    a0, s0 = float(angles[ai]), float(scales[si])
    angles = torch.arange(a0 - 1.0, a0 + 1.01, 0.1)
    scales = s0 * torch.exp(torch.arange(-0.03, 0.0301, 0.005))
    sc = _lattice_score(white, points, weights, period, angles, scales)
    si, ai = divmod(int(sc.argmax()), angles.numel())
    return float(angles[ai]), float(scales[si]), float(sc[si, ai])
