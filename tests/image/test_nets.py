"""Functional core of the tiled image watermark: folding, shift search, periodic tiles, gradients."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from wmark.image import nets  # noqa: E402


def test_fold_is_mean_over_repeats():
    t = 8
    tile = torch.randn(2, 3, t, t)
    e = tile.repeat(1, 1, 3, 5)[..., :20, :37]  # partial repeats at the borders
    assert torch.allclose(nets.fold(e, t), tile, atol=1e-6)
    # counts: a map of ones folds to ones, zeros elsewhere stay zero
    assert torch.equal(nets.fold(torch.ones(1, 1, 9, 9), t), torch.ones(1, 1, t, t))


def test_shifted_correlations_match_rolls():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(2, 4, 16, 16, generator=g)
    w = torch.randn(5, 4, 16, 16, generator=g)
    out = nets.shifted_correlations(m, w)
    for s in [(0, 0), (3, 7), (15, 1)]:
        ref = torch.einsum("bcuv,kcuv->bk", torch.roll(m, s, dims=(-2, -1)), w)
        assert torch.allclose(out[:, :, s[0], s[1]], ref, atol=1e-4)


def test_best_shift_finds_planted_alignment():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 1, 16, 16, generator=g)
    signs = torch.randint(0, 2, (8,), generator=g).float() * 2 - 1
    tile = torch.einsum("k,kcuv->cuv", signs, w)[None]
    m = torch.roll(tile, (-5, -9), dims=(-2, -1)) + 0.5 * torch.randn(1, 1, 16, 16, generator=g)
    all_l = nets.shifted_correlations(m, w)
    energy = all_l.pow(2).sum(1)[0]
    assert divmod(int(energy.argmax()), 16) == (5, 9)
    logits = nets.best_shift_logits(all_l)
    assert torch.equal(torch.sign(logits[0]), signs)


def test_encoder_tile_is_seamless_and_unit_rms():
    enc = nets.Encoder(n_bits=32, period=16, ch=4)
    t = enc(torch.randn(3, 32))
    assert t.shape == (3, 1, 16, 16)
    assert torch.allclose(t.pow(2).mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-4)
    # circular structure: shifting the message map cyclically shifts the tile (no border effects)
    base = enc.msg(torch.ones(1, 32)).view(1, 4, 4, 4)
    a = enc.body(base)
    b = enc.body(torch.roll(base, (1, 2), dims=(-2, -1)))
    assert torch.allclose(torch.roll(a, (4, 8), dims=(-2, -1)), b, atol=1e-5)


def test_decoder_is_crop_invariant():
    """A crop by a multiple of the period's working grid shifts nothing; any crop keeps the logits
    up to the border effects of the prefilter."""
    torch.manual_seed(0)
    dec = nets.Decoder(n_bits=16, tile=8, factor=2, ch=4, depth=2, out_ch=2).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        full = dec(x)
        m_full = dec.folded(x)
        m_crop = dec.folded(x[..., 16:, 32:])  # offset = 8 and 16 working px = whole tiles
    assert torch.allclose(m_full, m_crop, atol=0.35)
    assert full.shape == (1, 16)


def test_gradients_flow_through_decoder_and_encoder():
    from wmark.image.model import Config, ImageWatermarker

    m = ImageWatermarker(Config(period=16, enc_ch=4, dec_ch=4, dec_depth=2, dec_out=2))
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    bits = torch.randint(0, 2, (2, 128)).float()
    marked, logits = m(x, bits)
    logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert m.encoder.msg.weight.grad.abs().sum() > 0


def test_perceptual_mask_range():
    x = torch.rand(2, 3, 80, 64)
    mk = nets.perceptual_mask(x)
    assert mk.shape == (2, 1, 80, 64) and float(mk.min()) >= 0 and float(mk.max()) <= 1
