"""White-box PGD against a toy linear decoder."""
from __future__ import annotations

import torch

from wmark.attacks import bit_accuracy, get_attack


def _setup(k: int = 32, b: int = 4):
    """A linear decoder [B, 3, 16, 16] -> [B, k] and images it reads perfectly (bits embedded along w)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(k, 3 * 16 * 16, generator=g) / 20
    bits = (torch.rand(b, k, generator=g) > 0.5).float()
    x = (0.5 + 0.005 * torch.randn(b, 3 * 16 * 16, generator=g) + 0.05 * ((2 * bits - 1) @ w)).clamp(0, 1)

    def decoder(images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1) - 0.5) @ w.T * 10

    return decoder, x.view(b, 3, 16, 16), bits


def test_pgd_reduces_bit_accuracy_within_budget():
    decoder, x, bits = _setup()
    clean = bit_accuracy(decoder(x), bits).mean()
    spec = get_attack("pgd")
    eps = spec.param_value(1.0)
    y = spec(x, 1.0, torch.Generator().manual_seed(1), decoder=decoder, bits=bits)
    attacked = bit_accuracy(decoder(y), bits).mean()
    assert clean > 0.9 and attacked < clean - 0.3
    assert float((y - x).abs().max()) <= eps + 1e-6
    assert 0 <= float(y.min()) and float(y.max()) <= 1 and y.shape == x.shape
    assert torch.equal(spec(x, 0.0, decoder=decoder, bits=bits), x)
    y2 = spec(x, 1.0, torch.Generator().manual_seed(1), decoder=decoder, bits=bits)
    assert torch.equal(y, y2)


def test_pgd_stronger_is_not_weaker():
    decoder, x, bits = _setup()
    spec = get_attack("pgd")
    accs = [float(bit_accuracy(decoder(spec(x, s, torch.Generator().manual_seed(1), decoder=decoder, bits=bits)),
                               bits).mean()) for s in (0.0, 0.25, 1.0)]
    assert accs[0] >= accs[1] >= accs[2]


def test_pgd_needs_decoder():
    import pytest

    with pytest.raises(ValueError, match="needs decoder, bits"):
        get_attack("pgd")(torch.rand(1, 3, 8, 8), 0.5)


def test_pgd_against_shipped_image_model(demo_key):
    """The white-box limit on wmark's own decoder: PGD at full budget drives bit accuracy down."""
    import pytest

    from wmark.attacks.pgd import watermarker_target

    try:
        from wmark.image.model import ImageWatermarker

        wm = ImageWatermarker.load()
    except Exception as exc:  # pragma: no cover - the image model is not shipped in this checkout
        pytest.skip(f"image model unavailable: {exc}")
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 128), torch.linspace(0, 1, 128), indexing="ij")
    x = torch.stack([0.5 + 0.3 * torch.sin(5 * xx + k) * torch.cos(3 * yy) for k in range(3)])[None]
    marked = wm.embed_tensor(x, demo_key)
    decoder, bits = watermarker_target(wm, demo_key)
    clean = float(bit_accuracy(decoder(marked), bits[None]).mean())
    y = get_attack("pgd")(marked, 1.0, torch.Generator().manual_seed(0), decoder=decoder, bits=bits, steps=10)
    assert float((y - marked).abs().max()) <= 8 / 255 + 1e-6
    assert float(bit_accuracy(decoder(y), bits[None]).mean()) < clean
