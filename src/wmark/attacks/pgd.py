"""White-box removal: projected gradient descent under an L-inf budget against a bit decoder.

The attacker knows a differentiable ``decoder(images [B, C, H, W]) -> bit logits [B, K]`` and the
embedded bits ``[B, K]`` (0/1). It maximises the binary cross-entropy between the decoder's logits
and those bits (drives the bit accuracy down) within ``|x' - x|_inf <= eps`` and ``x' in [0, 1]``.
This is the honest limit of any decoder-based mark: with enough budget it always breaks.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Decoder = Callable[[torch.Tensor], torch.Tensor]


def bit_accuracy(logits: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Per-image fraction of bits read correctly: logits [B, K], bits [B, K] -> [B]."""
    return ((logits > 0) == (bits > 0.5)).float().mean(-1)


def pgd_attack(x: torch.Tensor, decoder: Decoder, bits: torch.Tensor, eps: float, *, steps: int = 20,
               step_size: float | None = None, random_start: bool = True,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """L-inf PGD: images x [B, C, H, W] in [0, 1] -> x' [B, C, H, W] with ``|x' - x| <= eps``.

    ``bits``: [B, K] or [K] (broadcast) target bits in {0, 1}. ``step_size`` defaults to
    ``2.5 eps / steps``. ``random_start`` draws a uniform start in the eps-ball from ``generator``.
    Returns the iterate with the lowest mean bit accuracy seen (ties: the later one).
    """
    if decoder is None or bits is None:
        raise ValueError("pgd needs decoder=callable(images) -> bit logits [B, K] and bits=[B, K] target bits")
    if eps < 0 or steps < 1:
        raise ValueError(f"pgd needs eps >= 0 and steps >= 1, got eps={eps}, steps={steps}")
    x = x.detach()
    if eps == 0:
        return x.clone()
    target = torch.as_tensor(bits, dtype=x.dtype, device=x.device)
    target = target.expand(x.shape[0], -1) if target.ndim == 1 else target
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    lo, hi = (x - eps).clamp(0, 1), (x + eps).clamp(0, 1)
    if random_start:
        u = torch.rand(tuple(x.shape), generator=generator, dtype=torch.float32).to(x.device, x.dtype)
        adv = torch.max(torch.min(x + (2 * u - 1) * eps, hi), lo)
    else:
        adv = x.clone()
    best, best_acc = adv.clone(), torch.full((x.shape[0],), 2.0, device=x.device)
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = decoder(adv)
            loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
            (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            acc = bit_accuracy(logits.detach(), target)
            better = acc <= best_acc
            best[better], best_acc[better] = adv.detach()[better], acc[better]
            adv = torch.max(torch.min(adv + alpha * grad.sign(), hi), lo)
    with torch.no_grad():
        acc = bit_accuracy(decoder(adv), target)
        better = acc <= best_acc
        best[better] = adv[better]
    return best.detach()


def watermarker_target(wm, key, payload=None) -> tuple[Decoder, torch.Tensor]:
    """Adapter for wmark's image model: ``(decoder(images) -> logits [B, K], bits [K])`` for PGD.

    ``wm``: a ``wmark.image`` ImageWatermarker; ``key`` / ``payload`` as given to ``embed``.
    """
    import numpy as np

    from wmark.image.model import read_logits

    _, bits, _ = wm._signs(payload, key, 1)
    wm.eval()

    def decoder(images: torch.Tensor) -> torch.Tensor:
        return read_logits(wm.decoder, images.to(wm.device), wm.null_bias)

    return decoder, torch.from_numpy(np.asarray(bits, dtype=np.float32))
