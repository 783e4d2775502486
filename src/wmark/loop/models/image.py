"""Image family of the loop: a small convolutional VAE on MNIST digits at 64 x 64, refitted each
generation (warm start from the previous generation's weights).

The decoder draws the full ``size`` x ``size`` image (three stride-2 transposed convolutions from
``size / 8``, the last one straight to the pixels, plus a free per-pixel output bias), so pixel-level
detail — a watermark residual included — is within what it can learn: nothing is upsampled after
the fact. Sampling bias ``lam`` is a temperature on the latent: ``z ~ N(0, lam I)``.

Samples are float32 tensors ``[n, 1, size, size]`` in [0, 1] on the CPU; real digits use grey
levels [0.1, 0.9] (headroom for an additive mark, see :func:`make_source`). Metrics
(:func:`evaluate`, see :mod:`wmark.loop.image_metrics`; images mapped back to [0, 1] first): ``fd``
(Frechet distance in the features of the shipped MNIST classifier), ``precision`` / ``recall``
(k-NN, k = 5, same features), ``class_entropy`` (entropy of the classifier's predicted digits, nats;
ln 10 = 2.30 for balanced digits), ``spec_dist`` (mean absolute log10 power-spectrum difference to
real images) and ``hf_excess`` (log10 ratio of power in the band >= ``hf_band`` cycles/pixel, where
the product's image mark lives, model vs real).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wmark.loop.models.base import Family

if TYPE_CHECKING:  # pragma: no cover
    from wmark.loop.image_metrics import RealReference



class ConvVAE(nn.Module):
    """Images ``[B, 1, S, S]`` (S divisible by 8) <-> latents ``[B, z_dim]``.

    Encoder: three stride-2 4x4 convolutions (``ch``, ``2 ch``, ``4 ch`` channels) to S/8, a linear
    map to ``(mu, logvar)``. Decoder: linear to ``4 ch`` x S/8 x S/8, three stride-2 4x4 transposed
    convolutions (``2 ch``, ``ch``, 1 channels) back to S x S, plus a per-pixel output bias."""

    def __init__(self, size: int = 64, z_dim: int = 16, ch: int = 16):
        super().__init__()
        if size < 8 or size % 8:
            raise ValueError(f"image size must be a positive multiple of 8, got {size}")
        self.size, self.z_dim, self.ch = size, z_dim, ch
        s8 = size // 8
        self.enc = nn.Sequential(
            nn.Conv2d(1, ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 4 * ch, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten())
        self.to_stats = nn.Linear(4 * ch * s8 * s8, 2 * z_dim)
        self.from_z = nn.Sequential(nn.Linear(z_dim, 4 * ch * s8 * s8), nn.LeakyReLU(0.2))
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(4 * ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(ch, 1, 4, 2, 1))
        self.pixel_bias = nn.Parameter(torch.zeros(1, 1, size, size))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, 1, S, S]`` -> ``(mu, logvar)``, each ``[B, z_dim]``."""
        mu, logvar = self.to_stats(self.enc(x)).chunk(2, dim=1)
        return mu, logvar

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, z_dim]`` -> pixel logits ``[B, 1, S, S]``."""
        s8 = self.size // 8
        h = self.from_z(z).view(z.shape[0], 4 * self.ch, s8, s8)
        return self.dec(h) + self.pixel_bias


#: fresh fits by (hyper-parameters, init seed, data digest) -> weights (a few, most recent)
_FRESH_FITS: dict[tuple, dict[str, torch.Tensor]] = {}


def vae_loss(net: nn.Module, x: torch.Tensor, g: torch.Generator, beta: float = 1.0) -> torch.Tensor:
    """Negative ELBO per image (Bernoulli likelihood on [0, 1] pixels, nats) of ``x [B, 1, S, S]``."""
    mu, logvar = net.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    rec = F.binary_cross_entropy_with_logits(net.decode_logits(z), x, reduction="sum") / x.shape[0]
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()
    return rec + beta * kl


@dataclass
class ImageModel:
    """Conv VAE learner; ``state`` holds its weights (None: not fitted yet).

    ``fit`` trains ``steps_init`` Adam steps from a fresh seeded init the first time and ``steps``
    steps warm-started from the current weights afterwards (minibatches of ``batch_size``, learning
    rate ``lr``, KL weight ``beta``). Checkpoints store the fields and ``state``; ``_net`` is rebuilt
    on demand.
    """

    size: int = 64
    z_dim: int = 16
    ch: int = 16
    steps: int = 150
    steps_init: int = 400
    batch_size: int = 64
    lr: float = 2e-3
    beta: float = 1.0
    state: dict | None = None
    _net: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("size", "z_dim", "ch", "batch_size", "steps_init"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"image model '{name}' must be a positive integer, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"image model 'steps' must be a non-negative integer, got {self.steps!r}")
        for name in ("lr", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"image model '{name}' must be a positive number, got {v!r}")

    def _params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("size", "z_dim", "ch", "steps", "steps_init", "batch_size",
                                              "lr", "beta")}

    def _build(self, seed: int | None = None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            net = ConvVAE(self.size, self.z_dim, self.ch)
        return net

    @property
    def net(self) -> nn.Module:
        """The live network (eval mode; ValueError before the first fit)."""
        if self.state is None:
            raise ValueError("ImageModel used before fit")
        if self._net is None:
            net = self._build()
            net.load_state_dict(self.state)
            self._net = net.eval()
        return self._net

    def fit(self, data: torch.Tensor, rng: np.random.Generator) -> "ImageModel":
        """A new model: these weights (or a fresh init) trained on ``data [N, 1, S, S]`` in [0, 1]."""
        from wmark.loop.engine import torch_generator

        x = torch.as_tensor(data, dtype=torch.float32).cpu()
        if x.ndim != 4 or x.shape[1:] != (1, self.size, self.size):
            raise ValueError(f"image data must be [N, 1, {self.size}, {self.size}], got {tuple(x.shape)}")
        g = torch_generator(rng)
        memo = None
        if self.state is None:  # fresh fit: arms share its data and seed at t = 1, so fit once
            seed = int(torch.randint(2**62, (1,), generator=g))
            memo = (tuple(self._params().items()), seed, hashlib.sha1(x.numpy().tobytes()).hexdigest())
            if memo in _FRESH_FITS:
                return ImageModel(**self._params(), state=_FRESH_FITS[memo])
            net, steps = self._build(seed), self.steps_init
        else:
            net, steps = self._build(), self.steps
            net.load_state_dict(self.state)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        bs = min(self.batch_size, x.shape[0])
        for _ in range(steps):
            idx = torch.randint(x.shape[0], (bs,), generator=g)
            loss = vae_loss(net, x[idx], g, float(self.beta))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if memo is not None:
            if len(_FRESH_FITS) >= 4:
                _FRESH_FITS.pop(next(iter(_FRESH_FITS)))
            _FRESH_FITS[memo] = state
        return ImageModel(**self._params(), state=state, _net=net)

    @torch.no_grad()
    def sample(self, n: int, lam: float, rng: np.random.Generator) -> torch.Tensor:
        """``n`` images ``[n, 1, S, S]`` in [0, 1] decoded from ``z ~ N(0, lam I)``."""
        from wmark.loop.engine import torch_generator

        net = self.net
        z = torch.randn((int(n), self.z_dim), generator=torch_generator(rng)) * float(lam) ** 0.5
        out = [torch.sigmoid(net.decode_logits(z[i:i + 256])) for i in range(0, int(n), 256)]
        return torch.cat(out) if out else torch.zeros(0, 1, self.size, self.size)


@dataclass
class MnistSource:
    """Real digits: ``pool [N, 1, S, S]`` (the loop draws from it) and held-out ``heldout [M, 1, S, S]``
    (metrics compare against its first ``n_eval``), both with grey levels mapped into ``levels``."""

    pool: torch.Tensor
    heldout: torch.Tensor
    levels: tuple[float, float] = (0.0, 1.0)
    _refs: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.pool.shape[-1])

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the grey-level map: ``levels`` -> [0, 1] (what the shipped classifier was trained on)."""
        lo, hi = self.levels
        return (x - lo) / (hi - lo)

    def sample(self, n: int, lam: float, rng: np.random.Generator) -> torch.Tensor:
        """``n`` pool images ``[n, 1, S, S]`` (without replacement while ``n <= N``; ``lam`` ignored)."""
        n = int(n)
        idx = rng.choice(len(self.pool), size=n, replace=n > len(self.pool))
        return self.pool[torch.from_numpy(idx)].clone()

    def reference(self, n_eval: int) -> "RealReference":
        """Features and spectrum of the first ``n_eval`` held-out images (cached)."""
        from wmark.loop.image_metrics import RealReference

        n_eval = min(int(n_eval), len(self.heldout))
        if n_eval not in self._refs:
            self._refs[n_eval] = RealReference.of(self.to_unit(self.heldout[:n_eval]))
        return self._refs[n_eval]


def make_source(size: int = 64, root: str | None = None, n_pool: int | None = None,
                levels: tuple[float, float] | list[float] = (0.1, 0.9)) -> MnistSource:
    """MNIST at ``size`` px from ``root`` (default ``../shared/data/mnist``): the pool is the split's
    :data:`~wmark.loop.mnist.TRAIN_RANGE` (its first ``n_pool`` images), held out its EVAL_RANGE.

    Grey levels [0, 1] are mapped into ``levels`` (default [0.1, 0.9]): an additive image mark needs
    headroom: on pure-black MNIST backgrounds clipping at 0 erases much of it (with the shipped
    image watermarker: 0 of 16 marked [0, 1] digits detected, 13 of 16 with
    the headroom)."""
    from wmark.loop.mnist import EVAL_RANGE, TRAIN_RANGE, load_mnist

    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size % 8:
        raise ValueError(f"image data 'size' must be a positive multiple of 8, got {size!r}")
    try:
        lo, hi = (float(v) for v in levels)
    except (TypeError, ValueError):
        raise ValueError(f"image data 'levels' must be two numbers [lo, hi], got {levels!r}") from None
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"image data 'levels' must satisfy 0 <= lo < hi <= 1, got {levels!r}")
    x, _ = load_mnist(root, size)
    (a, b), (c, d) = TRAIN_RANGE, EVAL_RANGE
    if n_pool is not None:
        if isinstance(n_pool, bool) or not isinstance(n_pool, int) or n_pool < 1:
            raise ValueError(f"image data 'n_pool' must be a positive integer, got {n_pool!r}")
        b = min(b, a + n_pool)
    return MnistSource(lo + (hi - lo) * x[a:b], lo + (hi - lo) * x[c:d], (lo, hi))


def make_model(source: MnistSource, **params: Any) -> ImageModel:
    """An unfitted conv VAE for the source's image size (``params``: :class:`ImageModel` fields)."""
    allowed = {"z_dim", "ch", "steps", "steps_init", "batch_size", "lr", "beta"}
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"bad parameters for the image model: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(allowed))})")
    return ImageModel(size=source.size, **params)


def evaluate(model: ImageModel, source: MnistSource, train: Any, rng: np.random.Generator,
             params: Mapping[str, Any]) -> dict[str, float]:
    """Scores of ``eval.n_eval`` (default 500) samples at lam = 1 against as many held-out digits
    (``k`` = 5 for precision / recall, ``hf_band`` = 0.3 cycles/pixel; see the module docstring)."""
    from wmark.loop.image_metrics import MARK_BAND, image_scores

    n_eval = int(params.get("n_eval", 500))
    fake = source.to_unit(model.sample(n_eval, 1.0, rng))
    scores = image_scores(source.reference(n_eval), fake, k=int(params.get("k", 5)),
                          hf_band=float(params.get("hf_band", MARK_BAND)))
    return scores.as_dict()


FAMILY = Family("image", make_model, make_source, evaluate,
                description="conv VAE on MNIST digits at 64 x 64, warm-started each generation; lam = latent "
                            "temperature", source_is_model=False)
