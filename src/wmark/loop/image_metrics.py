"""Image metrics of the loop: a small MNIST classifier shipped with the package (its features give
the Frechet distance and k-NN precision / recall), class entropy, and power-spectrum measures.

Classifier: :class:`LeNet` on 64 x 64 digits (average-pooled to 32 x 32), 64-d penultimate
features. Trained once (4 epochs, seed 0, one thread: 98% on the 2000 held-out digits) on the loop's
real-data pool of the shared MNIST test split (the only MNIST split in the shared data;
:data:`wmark.loop.mnist.TRAIN_RANGE`; the held-out digits are the ones the loop evaluates against)
and shipped as ``weights/mnist_lenet.pt`` (260 kB), verified against ``weights/mnist_lenet.sha256``.
Reproduce (same bytes on the same torch build)::

    wmark train classifier --out DIR

Spectra: :func:`power_spectrum` is the mean ``|rfft2|^2`` of a set of images;
:func:`spectral_distance` the mean absolute log10 difference of two of them (DC excluded);
:func:`band_log_ratio` the log10 ratio of their power in the radial band ``>= lo`` cycles/pixel.
The product's image mark on upsampled MNIST puts 95% of its energy at >= 0.3 cycles/pixel, where
the digits (mean removed) have 0.2% of theirs, so ``band_log_ratio(model, real, 0.3)`` is its
spectral footprint.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from wmark.loop import metrics

CLASSIFIER_NAME = "mnist_lenet"
FEATURE_DIM = 64
#: radial frequency (cycles/pixel) above which the product's image mark lives on upsampled MNIST
MARK_BAND = 0.3


class LeNet(nn.Module):
    """LeNet-like digit classifier: images ``[B, 1, S, S]`` in [0, 1] (S = 64: pooled to 32) ->
    logits ``[B, 10]``; :meth:`features` gives the 64-d penultimate layer ``[B, 64]``."""

    def __init__(self, in_size: int = 64):
        super().__init__()
        self.pool = max(1, in_size // 32)
        self.conv1 = nn.Conv2d(1, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * 5 * 5, FEATURE_DIM)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


# -- the shipped classifier --------------------------------------------------------------------------
_CLASSIFIER: dict[str, LeNet] = {}


def load_classifier(name: str = CLASSIFIER_NAME) -> LeNet:
    """The shipped classifier (eval mode, cached; ValueError if its sha256 does not match)."""
    if name not in _CLASSIFIER:
        from wmark.assets import shipped_blob

        blob = shipped_blob("wmark.loop", name, "classifier weights")
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        net = LeNet(int(state.pop("in_size").item()))
        net.load_state_dict(state)
        _CLASSIFIER[name] = net.eval()
    return _CLASSIFIER[name]


@torch.no_grad()
def classify(x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[n, 64]`` float64 and class logits ``[n, 10]`` of images ``x [n, 1, S, S]``."""
    net = load_classifier()
    feats, logits = [], []
    for i in range(0, x.shape[0], batch):
        f = net.features(x[i:i + batch].float().cpu())
        feats.append(f)
        logits.append(net.fc2(f))
    if not feats:
        return np.zeros((0, FEATURE_DIM)), np.zeros((0, 10))
    return torch.cat(feats).double().numpy(), torch.cat(logits).double().numpy()


def train_classifier(images: torch.Tensor, labels: np.ndarray, epochs: int = 4, seed: int = 0,
                     batch: int = 64, lr: float = 2e-3) -> LeNet:
    """A :class:`LeNet` trained on ``images [N, 1, S, S]``, ``labels [N]`` (Adam, one thread, seeded:
    the same bytes every run on the same torch build)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = LeNet(int(images.shape[-1]))
            opt = torch.optim.Adam(net.parameters(), lr=lr)
            y = torch.as_tensor(labels, dtype=torch.long)
            g = torch.Generator().manual_seed(seed)
            for _ in range(epochs):
                for idx in torch.randperm(len(y), generator=g).split(batch):
                    loss = F.cross_entropy(net(images[idx]), y[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()


def save_classifier(net: LeNet, folder: str | Path, name: str = CLASSIFIER_NAME) -> str:
    """Write ``<name>.pt`` and ``<name>.sha256`` into ``folder``; returns the digest."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    state["in_size"] = torch.tensor(net.pool * 32)
    buf = io.BytesIO()
    torch.save(state, buf)
    from wmark.assets import write_weights

    return write_weights(folder, name, buf.getvalue())


# -- spectra -----------------------------------------------------------------------------------------
def power_spectrum(x: torch.Tensor) -> np.ndarray:
    """Mean power spectrum ``[S, S // 2 + 1]`` (|rfft2|^2, float64) of images ``x [n, 1, S, S]``."""
    return (torch.fft.rfft2(x.double()[:, 0]).abs() ** 2).mean(0).numpy()


def radial_frequency(shape: Sequence[int]) -> np.ndarray:
    """Radial frequency (cycles/pixel) ``[S, S // 2 + 1]`` of each rfft2 bin of an ``S x S`` image."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1] if len(shape) > 1 else shape[0])[None, :]
    return np.sqrt(fy ** 2 + fx ** 2)


def spectral_distance(p: np.ndarray, q: np.ndarray, eps: float = 1e-12) -> float:
    """Mean |log10 p - log10 q| over the non-DC bins of two power spectra ``[S, S // 2 + 1]``."""
    lp, lq = np.log10(p + eps), np.log10(q + eps)
    mask = np.ones(p.shape, dtype=bool)
    mask[0, 0] = False
    return float(np.abs(lp - lq)[mask].mean())


def band_log_ratio(p: np.ndarray, q: np.ndarray, lo: float = MARK_BAND, eps: float = 1e-30) -> float:
    """log10 (power of ``p`` / power of ``q``) in the radial band ``>= lo`` cycles/pixel."""
    band = radial_frequency((p.shape[0], 2 * (p.shape[1] - 1))) >= lo
    return float(np.log10((p[band].sum() + eps) / (q[band].sum() + eps)))


def class_entropy(logits: np.ndarray) -> float:
    """Entropy (nats) of the histogram of predicted classes ``argmax logits [n, 10]``."""
    counts = np.bincount(np.asarray(logits).argmax(1), minlength=logits.shape[1])
    return metrics.entropy(counts / max(counts.sum(), 1))


# -- all of them -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageScores:
    """Metrics of generated images against real ones (see the module docstring)."""

    fd: float
    precision: float
    recall: float
    class_entropy: float
    spec_dist: float
    hf_excess: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class RealReference:
    """What the scores need of the real images: features ``[n, 64]`` and power spectrum."""

    feats: np.ndarray
    spectrum: np.ndarray

    @classmethod
    def of(cls, real: torch.Tensor) -> "RealReference":
        return cls(classify(real)[0], power_spectrum(real))


def image_scores(real: RealReference | torch.Tensor, fake: torch.Tensor, k: int = 5,
                 hf_band: float = MARK_BAND) -> ImageScores:
    """Scores of ``fake [m, 1, S, S]`` against ``real`` (images ``[n, 1, S, S]`` or their reference)."""
    ref = real if isinstance(real, RealReference) else RealReference.of(real)
    feats, logits = classify(fake)
    precision, recall = metrics.precision_recall(ref.feats, feats, k=k)
    spec = power_spectrum(fake)
    return ImageScores(metrics.frechet_distance(ref.feats, feats), precision, recall, class_entropy(logits),
                       spectral_distance(spec, ref.spectrum), band_log_ratio(spec, ref.spectrum, hf_band))
