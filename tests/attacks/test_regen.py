"""Regeneration through the tiny autoencoder: hook, shapes, blend mapping, shipped weights."""
from __future__ import annotations

import pytest
import torch

from wmark.attacks import get_attack
from wmark.attacks.regen import TinyAE


def test_regen_with_given_autoencoder():
    torch.manual_seed(0)
    ae = TinyAE().eval()
    x = torch.rand(2, 3, 30, 45)  # not a multiple of 4: padded and cropped back
    spec = get_attack("regen_ae")
    assert torch.equal(spec(x, 0.0, autoencoder=ae), x)
    full, half = spec(x, 1.0, autoencoder=ae), spec(x, 0.5, autoencoder=ae)
    assert full.shape == x.shape and 0 <= float(full.min()) and float(full.max()) <= 1
    assert torch.allclose(half, (x + 0.5 * (full - x)).clamp(0, 1), atol=1e-6)
    gray = spec(x[:, :1], 1.0, autoencoder=ae)
    assert gray.shape == (2, 1, 30, 45)


def test_autoencoder_bytes_round_trip():
    ae = TinyAE().eval()
    back = TinyAE.from_bytes(ae.to_bytes())
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(back(x), ae(x), atol=5e-3)  # fp16 storage


def test_shipped_autoencoder_or_clear_error():
    from importlib.resources import files

    from wmark.attacks.regen import load_autoencoder

    shipped = (files("wmark.attacks") / "weights" / "regen_ae.pt").is_file()
    x = 0.5 + 0.3 * torch.sin(torch.linspace(0, 6, 64 * 64)).view(1, 1, 64, 64).expand(1, 3, 64, 64)
    if not shipped:
        with pytest.raises(ValueError, match="needs the shipped autoencoder"):
            get_attack("regen_ae")(x, 1.0)
        return
    ae = load_autoencoder()
    y = get_attack("regen_ae")(x, 1.0)
    psnr = -10 * torch.log10(((y - x) ** 2).mean())
    assert y.shape == x.shape and float(psnr) > 20  # keeps the picture
    assert len((files("wmark.attacks") / "weights" / "regen_ae.pt").read_bytes()) <= 8 * 2**20
    assert isinstance(ae, TinyAE)
