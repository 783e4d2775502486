"""Encoder / decoder networks and the pure tensor functions around them.

Conventions: images are float tensors in [0, 1], ``[B, C, H, W]`` with C = 3 (RGB); the mark lives in
luminance only (the same residual is added to R, G and B), so grayscale inputs and colour changes
are handled by the same path. Networks work at a fixed internal size ``S x S`` (default 64): the
encoder sees the downsampled luminance and predicts a residual at ``S x S``; it is upsampled to the
full image, shaped by a perceptual mask (local activity, saturation guard) and scaled to a fixed
RMS. The decoder resizes any image to ``S x S`` and reads bit logits through global pooling.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


# -- pure functions ----------------------------------------------------------------------------
def luma(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] (or [B, 1, H, W]) -> [B, 1, H, W] luminance."""
    if x.shape[1] == 1:
        return x
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x[:, :3] * w).sum(1, keepdim=True)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of [B, C, H, W] to ``size`` = (h, w)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    down = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=down)


def box_blur(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean filter with a k x k window (reflect padding), [B, C, H, W] -> same."""
    p = k // 2
    x = F.pad(x, (p, p, p, p), mode="replicate")
    return F.avg_pool2d(x, k, stride=1)


def perceptual_mask(x: torch.Tensor, floor: float = 0.15, tau: float = 0.04, guard: float = 0.05) -> torch.Tensor:
    """Where a residual may go: [B, C, H, W] image -> [B, 1, H, W] weights in [0, 1].

    Local standard deviation of luminance (window ~ 1% of the short side, at least 3 px) divided by
    ``tau``, clipped to [floor, 1] (flat regions get ``floor``), smoothed, times a saturation guard
    ``min(x, 1 - x) / guard`` (over channels) so the mark never clips at black or white."""
    y = luma(x)
    h, w = y.shape[-2:]
    k = max(3, (min(h, w) // 100) | 1)
    mu = box_blur(y, k)
    var = (box_blur(y * y, k) - mu * mu).clamp_min(0)
    act = (var.add(1e-8).sqrt() / tau).clamp(floor, 1.0)
    act = box_blur(act, k)
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    sat = (torch.minimum(lo, 1 - hi) / guard).clamp(0, 1)
    return act * sat


def shape_residual(r_small: torch.Tensor, mask: torch.Tensor, rms: float) -> torch.Tensor:
    """Upsample [B, 1, S, S] residual to the mask's size, weight by the mask [B, 1, H, W] and scale
    each image to root-mean-square ``rms`` -> [B, 1, H, W]."""
    r = resize(r_small, tuple(mask.shape[-2:])) * mask
    norm = r.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-12).sqrt()
    return r * (rms / norm)


def apply_residual(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Add a luminance residual [B, 1, H, W] to every colour channel of x [B, C, H, W], clamp to [0, 1]."""
    return (x + r).clamp(0, 1)


def bits_to_signs(bits: torch.Tensor) -> torch.Tensor:
    """{0, 1} bits [B, n] -> {-1, +1} float [B, n]."""
    return bits.float() * 2 - 1


# -- modules -----------------------------------------------------------------------------------
def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.GELU())


class Encoder(nn.Module):
    """signs [B, n] (and optionally luminance [B, 1, S, S]) -> residual [B, 1, S, S] in (-1, 1).

    The message is expanded to a ``tile x tile`` map (repeated over the S x S grid when tile < S).
    By default the encoder does not look at the image (``image_cond=False``): the image shapes the
    mark only through the perceptual mask, which barely changes when the mark is added, so the
    key-holder can invert the embedding exactly (strip). With ``image_cond=True`` it also sees the
    downsampled luminance (more adaptive, but then strip cannot invert it)."""

    def __init__(self, n_bits: int = 128, size: int = 64, ch: int = 16, msg_ch: int = 16, tile: int = 64,
                 image_cond: bool = False):
        super().__init__()
        self.size, self.tile, self.msg_ch, self.image_cond = size, tile, msg_ch, image_cond
        self.msg = nn.Sequential(nn.Linear(n_bits, msg_ch * (tile // 4) ** 2), nn.GELU())
        self.msg_up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _block(msg_ch, msg_ch),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _block(msg_ch, msg_ch))
        extra = 9 if image_cond else 0
        if image_cond:
            self.img = _block(1, 8)
        self.fuse = nn.Sequential(_block(msg_ch + extra, ch), _block(ch, ch), nn.Conv2d(ch, 1, 1))

    def forward(self, y_small: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        b = signs.shape[0]
        t4 = self.tile // 4
        m = self.msg_up(self.msg(signs).view(b, self.msg_ch, t4, t4))  # [B, msg_ch, tile, tile]
        reps = self.size // self.tile
        if reps > 1:
            m = m.repeat(1, 1, reps, reps)
        if self.image_cond:
            m = torch.cat([self.img(y_small), m, y_small], 1)
        return torch.tanh(self.fuse(m))


class Decoder(nn.Module):
    """luminance [B, 1, S, S] -> bit logits [B, n].

    Conv stack down to S/4, then either global average pooling (``pool="global"``: shift-invariant)
    or a position-aware head (``pool="flatten"``: 1x1 conv to ``head_ch`` channels, flatten, linear)."""

    def __init__(self, n_bits: int = 128, ch: int = 16, feat: int = 128, pool: str = "global",
                 size: int = 64, head_ch: int = 8):
        super().__init__()
        self.pool = pool
        self.body = nn.Sequential(
            _block(1, ch, 2), _block(ch, 2 * ch), _block(2 * ch, 4 * ch, 2), _block(4 * ch, 4 * ch),
            _block(4 * ch, feat), nn.Conv2d(feat, feat if pool == "global" else head_ch, 1))
        n_in = feat if pool == "global" else head_ch * (size // 4) ** 2
        self.head = nn.Linear(n_in, n_bits)

    def forward(self, y_small: torch.Tensor) -> torch.Tensor:
        # high-pass input: remove the local mean so natural image content matters less
        y = y_small - box_blur(y_small, 5)
        f = self.body(y * 20.0)
        f = f.mean(dim=(2, 3)) if self.pool == "global" else f.flatten(1)
        return self.head(f)
