"""Image robustness sweep: attacks x strengths x watermarking methods.

Per (method, attack, strength): mean bit accuracy, TPR at FPR 1e-3 and 1e-6, and PSNR / SSIM of the
attacked image against the marked one. wmark's TPR comes from its calibrated p-values
(``Detection.p_value < alpha``); the invisible-watermark baselines (dwtDct, dwtDctSvd, rivaGan: 32
random bits per image) get ``p = P[Binomial(32, 1/2) >= k]`` for k matching bits (a one-sided test
against the image's own known message), TPR = fraction with ``p < alpha``.

    >>> from wmark.bench.robustness import run_robustness, RobustnessConfig     # doctest: +SKIP
    >>> run_robustness(RobustnessConfig(out="runs/rob", quick=True))       # doctest: +SKIP

Everything heavy (torch, the models, imwatermark) is imported inside the functions that need it.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from wmark.assets import IMAGE_EXTS, list_images, sha256_bytes, shared_data, write_atomic
from wmark.bench.outputs import prepare_out
from wmark.bench.report import fmt, md_table, nan_to_none, plot_curves, progress, stable_seed
from wmark.image.quality import psnr, ssim_luma as ssim
from wmark.stats import binom_sf

ALPHAS: tuple[float, ...] = (1e-3, 1e-6)
DEFAULT_STRENGTHS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
QUICK_STRENGTHS: tuple[float, ...] = (0.0, 0.5)
QUICK_ATTACKS: tuple[str, ...] = ("jpeg", "crop_center", "noise", "blur", "regen_ae", "purify", "pgd")
DEFAULT_METHODS: tuple[str, ...] = ("wmark", "dwtDct", "dwtDctSvd", "rivaGan")
QUICK_METHODS: tuple[str, ...] = ("wmark", "dwtDct", "dwtDctSvd")
QUICK_SIZE = 256  # imwatermark refuses images under 256 x 256 pixels
BASELINE_BITS = 32
PSNR_CAP = 100.0  # dB, for identical images


def alpha_key(alpha: float) -> str:
    """JSON / table key of a TPR column: ``1e-3 -> "tpr@1e-03"``."""
    return f"tpr@{alpha:.0e}"


# -- statistics -------------------------------------------------------------------------------------
def binomial_pvalue(matches: int, n_bits: int = BASELINE_BITS) -> float:
    """``P[Binomial(n_bits, 1/2) >= matches]``: the p-value of ``matches`` correct bits out of ``n_bits``."""
    return float(binom_sf(int(matches), n_bits, 0.5))


def tpr(p_values: Iterable[float], alpha: float) -> float:
    """Fraction of p-values below ``alpha``."""
    p = np.asarray(list(p_values), dtype=np.float64)
    return float((p < alpha).mean()) if p.size else float("nan")


def tpr_from_matches(matches: Iterable[int], alpha: float, n_bits: int = BASELINE_BITS) -> float:
    """TPR at ``alpha`` of a bit-matching baseline: fraction of images with ``binomial_pvalue(k) < alpha``."""
    return tpr((binomial_pvalue(k, n_bits) for k in matches), alpha)


# -- images -----------------------------------------------------------------------------------------
def _square(img: Any, size: int) -> Any:
    """PIL image -> centre square crop resized to size x size."""
    from PIL import Image

    w, h = img.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return img.crop(box).resize((size, size), Image.BICUBIC)


def load_images(folder: str | Path, n: int | None = None,
                size: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    """RGB uint8 arrays [H, W, 3] of the first ``n`` images (sorted by name) in ``folder``, and their names.

    ``size``: centre-crop to a square and resize to ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError

    d = Path(folder)
    paths = list_images(d)[:n]
    if not paths:
        raise ValueError(f"{d}: no images found ({', '.join(sorted(IMAGE_EXTS))})")
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                out.append(np.asarray(_square(im, size) if size else im, dtype=np.uint8).copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"{p}: not a readable image ({type(exc).__name__})") from None
    return out, [p.name for p in paths]


def synthetic_images(n: int, size: int = QUICK_SIZE, seed: int = 0) -> list[np.ndarray]:
    """``n`` natural-ish RGB test images: smooth colour fields, a few shapes, mild texture (uint8)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        im = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(4):
            x0, y0 = rng.integers(0, size - 16, 2)
            x1, y1 = x0 + rng.integers(16, size // 2), y0 + rng.integers(16, size // 2)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        a = np.asarray(im, dtype=np.float64) + rng.normal(0, 6, (size, size, 3))
        out.append(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return out


def to_tensor(a: np.ndarray) -> Any:
    """uint8 [H, W, 3] -> float tensor [1, 3, H, W] in [0, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()[None] / 255.0


def to_uint8(x: Any) -> np.ndarray:
    """Float tensor [1, C, H, W] in [0, 1] -> uint8 [H, W, 3] (8-bit quantised, as a saved PNG)."""
    import torch

    a = (x[0].detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().transpose(1, 2, 0)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


# -- methods ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Marked:
    """A marked image (uint8 [H, W, 3]), the bits it carries, and method-private state."""

    image: np.ndarray
    bits: np.ndarray
    state: Any = None


@dataclass(frozen=True)
class Reading:
    """One detection: bit accuracy against the carried bits and the detection p-value; ``variants``:
    (method name, Reading) of other read-outs of the same attacked image (e.g. with the payload known)."""

    bit_acc: float
    p_value: float
    variants: tuple[tuple[str, "Reading"], ...] = ()


class Method(Protocol):
    """A watermarking method under test."""

    name: str
    p_value_doc: str
    variants: dict[str, str]  # variant method name -> its p-value doc (read-outs reported beside it)
    variant_bits: dict[str, int]  # bits a variant scores, where not the carried ones

    def embed(self, image: np.ndarray, rng: np.random.Generator) -> Marked: ...

    def read(self, image: np.ndarray, marked: Marked) -> Reading: ...

    def attack_extra(self, attack: str, marked: Marked) -> dict[str, Any] | None: ...


class WmarkMethod:
    """wmark's image model (shipped weights, demo key, random 6-byte payload per image). Each image is
    read blind (payload unknown: ``wmark``, raw 128 carried bits; ``wmark-payload``, the 48-bit message
    it returns) and verifying the payload it carries (``wmark-known``, the counterpart of the baselines'
    known-message test)."""

    name = "wmark"
    p_value_doc = "calibrated detector p-value (unknown payload; geometric search Bonferroni-corrected)"
    variants = {"wmark-payload": "as wmark (the same blind detection); bit accuracy over the 48 payload bits it "
                                 "returns (RS-decoded, or the systematic bits of the descrambled read where "
                                 "decoding fails) -- the counterpart of the baselines' 32 message bits",
                "wmark-known": "calibrated detector p-value with the carried payload known to the detector "
                               "(exact binomial tail at the key-blind shift and at the best-agreeing of 1024 "
                               "cyclic shifts, x2048; geometric search Bonferroni-corrected)"}
    variant_bits = {"wmark-payload": 48}  # bits scored by a variant, where not the carried codeword's

    def __init__(self, weights: str | None = None) -> None:
        from wmark.image.model import ImageWatermarker, load
        from wmark.keys import Key

        self.wm = load() if weights is None else ImageWatermarker.from_bytes(_weights_bytes(weights))
        self.key = Key.demo()

    def embed(self, image: np.ndarray, rng: np.random.Generator) -> Marked:
        payload = rng.bytes(6)
        emb = self.wm.embed(to_tensor(image), self.key, payload)
        return Marked(to_uint8(emb.images), np.asarray(emb.bits).astype(np.uint8), payload)

    def read(self, image: np.ndarray, marked: Marked) -> Reading:
        from wmark.codes import bytes_to_bits

        x = to_tensor(image)
        det = self._one(self.wm.detect(x, self.key))
        blind = self._reading(det, marked)
        got = bytes_to_bits(det.payload) if det.payload is not None else \
            self.wm.code.descramble(np.asarray(det.bits).astype(np.uint8), self.key)[: self.wm.code.k_bits]
        message = Reading(float((got == bytes_to_bits(marked.state)).mean()), blind.p_value)
        known = self._reading(self._one(self.wm.detect(x, self.key, marked.state)), marked)
        return Reading(blind.bit_acc, blind.p_value, (("wmark-payload", message), ("wmark-known", known)))

    @staticmethod
    def _one(det: Any) -> Any:
        return det[0] if isinstance(det, list) else det

    @staticmethod
    def _reading(det: Any, marked: Marked) -> Reading:
        bits = np.asarray(det.bits).astype(np.uint8)
        if bits.shape != marked.bits.shape:
            raise ValueError(f"wmark read {bits.shape} bits but embedded {marked.bits.shape}")
        return Reading(float((bits == marked.bits).mean()), float(det.p_value))

    def attack_extra(self, attack: str, marked: Marked) -> dict[str, Any] | None:
        """White-box PGD gets wmark's own decoder and the carried bits; other attacks need nothing."""
        if attack != "pgd":
            return {}
        import torch

        from wmark.attacks.pgd import watermarker_target

        decoder, _ = watermarker_target(self.wm, self.key, marked.state)
        return {"decoder": decoder, "bits": torch.from_numpy(marked.bits.astype(np.float32))}


class ImwatermarkMethod:
    """An ``invisible-watermark`` baseline (``imwatermark``), 32 random bits per image."""

    p_value_doc = "P[Binomial(32, 1/2) >= matching bits] against the image's own 32-bit message"
    variants: dict[str, str] = {}
    variant_bits: dict[str, int] = {}

    def __init__(self, method: str) -> None:
        import cv2  # noqa: F401  (fail here, not per image)
        from imwatermark import WatermarkEncoder

        self.name = method
        if method == "rivaGan":
            WatermarkEncoder.loadModel()

    def embed(self, image: np.ndarray, rng: np.random.Generator) -> Marked:
        import cv2
        from imwatermark import WatermarkEncoder

        bits = rng.integers(0, 2, BASELINE_BITS).astype(np.uint8)
        enc = WatermarkEncoder()
        enc.set_watermark("bits", bits.tolist())
        out = enc.encode(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.name)
        return Marked(cv2.cvtColor(out, cv2.COLOR_BGR2RGB), bits)

    def read(self, image: np.ndarray, marked: Marked) -> Reading:
        """Undecodable images (too small after a crop, decoder errors) count as chance: 16 of 32 bits."""
        import cv2
        from imwatermark import WatermarkDecoder

        try:
            got = WatermarkDecoder("bits", BASELINE_BITS).decode(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), self.name)
            k = int((np.asarray(got, dtype=np.uint8).reshape(-1)[:BASELINE_BITS] == marked.bits).sum())
        except Exception:  # noqa: BLE001 - the library raises bare RuntimeErrors / cv2 errors
            k = BASELINE_BITS // 2
        return Reading(k / BASELINE_BITS, binomial_pvalue(k))

    def attack_extra(self, attack: str, marked: Marked) -> dict[str, Any] | None:
        """No white-box access: attacks that need a decoder (pgd) are not run against baselines."""
        return None if attack == "pgd" else {}


def _weights_bytes(path: str) -> bytes:
    """The bytes of an image weights file given with ``--weights`` (one-line error where unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such image weights file")
    return p.read_bytes()


def _baseline(method: str) -> Callable[..., Method]:
    return lambda weights=None: ImwatermarkMethod(method)  # wmark's image weights do not concern it


def _weights_record(weights: str | None) -> dict[str, str]:
    """Which image weights wmark ran with: the shipped name or the file's path, and its sha256."""
    from wmark.image.model import weights_blob

    blob = weights_blob("default") if weights is None else _weights_bytes(weights)
    return {"source": "shipped:default" if weights is None else str(weights), "sha256": sha256_bytes(blob)}


#: method name -> factory(weights=None) (raises ImportError / RuntimeError when not runnable here);
#: ``weights``: an image weights file for wmark (None: the shipped ones), ignored by the baselines
METHODS: dict[str, Callable[..., Method]] = {
    "wmark": WmarkMethod,
    "dwtDct": _baseline("dwtDct"),
    "dwtDctSvd": _baseline("dwtDctSvd"),
    "rivaGan": _baseline("rivaGan"),
}
#: methods skipped (with a printed reason) when they cannot be loaded; wmark itself must always run
OPTIONAL = frozenset({"dwtDct", "dwtDctSvd", "rivaGan"})
MIN_PIXELS: dict[str, int] = {"dwtDct": 256 * 256, "dwtDctSvd": 256 * 256, "rivaGan": 256 * 256}


# -- configuration and results ----------------------------------------------------------------------
@dataclass(frozen=True)
class RobustnessConfig:
    """Settings of one sweep (``None`` fields take the quick or full defaults)."""

    out: str
    images: str | None = None
    attacks: tuple[str, ...] | None = None
    strengths: tuple[float, ...] | None = None
    methods: tuple[str, ...] | None = None
    n: int | None = None
    rivagan_n: int = 2
    quick: bool = False
    seed: int = 0
    progress: bool = True
    jobs: int = 1
    weights: str | None = None  # image weights file for wmark (default: the shipped ``default``)
    overwrite: bool = False  # write into a non-empty ``out`` (else refused before any work)


@dataclass(frozen=True)
class Sample:
    """One image under one attack at one strength, for one method."""

    method: str
    image: int
    attack: str
    strength: float
    bit_acc: float
    p_value: float
    psnr: float
    ssim: float


@dataclass(frozen=True)
class Cell:
    """Mean over images of one (method, attack, strength)."""

    method: str
    attack: str
    strength: float
    param: Any
    n: int
    bit_acc: float
    tpr: dict[str, float]
    psnr: float | None
    ssim: float | None


@dataclass(frozen=True)
class RobustnessResult:
    """Everything written to ``results.json``."""

    config: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    skipped: dict[str, str]
    cells: tuple[Cell, ...]
    breaks: dict[str, dict[str, float | None]]
    elapsed_s: float
    notes: tuple[str, ...] = field(default=())
    shortfalls: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["cells"] = [asdict(c) for c in self.cells]
        return {"benchmark": "robustness", "schema": 1, **nan_to_none(d)}


# -- the sweep --------------------------------------------------------------------------------------
def check_attacks(names: Sequence[str]) -> tuple[str, ...]:
    """Validate image attack names against the registry (``-`` may stand for ``_``); 'none' is implied."""
    from wmark.attacks import registry

    reg = registry("image")
    names = tuple(dict.fromkeys(n.strip().replace("-", "_") for n in names if n.strip()))
    bad = [n for n in names if n not in reg]
    if bad:
        raise ValueError(f"unknown image attack {', '.join(map(repr, bad))}; known: {', '.join(reg)}")
    if not names:
        raise ValueError("no attacks given")
    return tuple(n for n in names if n != "none")


def check_methods(names: Sequence[str]) -> tuple[str, ...]:
    """Validate method names against :data:`METHODS`."""
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise ValueError(f"unknown method {', '.join(map(repr, bad)) or '(none given)'}; known: {', '.join(METHODS)}")
    return names


def _evaluate(method: Method, idx: int, image: np.ndarray, attacks: Sequence[str], strengths: Sequence[float],
              seed: int, tick: Callable[[int], None]) -> tuple[list[Sample], float, float, int]:
    """All attacks x strengths on one image for one method -> samples, embed PSNR, embed SSIM, bits carried.

    Attacks at strengths with the same natural parameter (and identity attacks at 0) are run once; the
    attack's randomness is seeded by (seed, image, attack) only, so methods see the same edits."""
    import torch

    from wmark.attacks import get_attack

    marked = method.embed(image, np.random.default_rng([seed, idx]))
    x = to_tensor(marked.image)
    clean = method.read(marked.image, marked)
    samples = [Sample(m, idx, "none", 0.0, r.bit_acc, r.p_value, PSNR_CAP, 1.0) for m, r in _readouts(method, clean)]
    for name in attacks:
        spec = get_attack(name)
        extra = method.attack_extra(name, marked) if spec.needs else {}
        done: dict[str, tuple[Reading, float, float]] = {}
        for s in strengths:
            tick(1)
            if extra is None:
                continue
            key = "identity" if (s == 0 and spec.identity_at_zero) else repr(spec.param_value(s))
            done.setdefault("identity", (clean, PSNR_CAP, 1.0))
            if key not in done:
                gen = torch.Generator().manual_seed(stable_seed(seed, idx, name))
                y = to_uint8(spec(x, s, gen, **extra))
                done[key] = (method.read(y, marked), psnr(y, marked.image, cap=PSNR_CAP), ssim(y, marked.image))
            r, p, q = done[key]
            samples += [Sample(m, idx, name, float(s), v.bit_acc, v.p_value, p, q) for m, v in _readouts(method, r)]
    return samples, psnr(marked.image, image, cap=PSNR_CAP), ssim(marked.image, image), len(marked.bits)


def _readouts(method: Method, r: Reading) -> list[tuple[str, Reading]]:
    """(method name, reading) of the main read-out and its variants."""
    return [(method.name, r), *r.variants]


_WORKER_METHODS: dict[str, Method] = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _task(m: str, idx: int, image: np.ndarray, attacks: Sequence[str], strengths: Sequence[float],
          seed: int, weights: str | None = None) -> tuple[list[Sample], float, float, int, float]:
    """One (method, image) evaluation in a worker process (methods built once per process)."""
    if m not in _WORKER_METHODS:
        _WORKER_METHODS[m] = METHODS[m](weights=weights)
    t = time.perf_counter()
    got, p, q, n_bits = _evaluate(_WORKER_METHODS[m], idx, image, attacks, strengths, seed, lambda k: None)
    return got, p, q, n_bits, time.perf_counter() - t


def _mean(v: Sequence[float]) -> float | None:
    a = np.asarray([x for x in v if not math.isnan(x)], dtype=np.float64)
    return float(a.mean()) if a.size else None


def aggregate(samples: Sequence[Sample]) -> tuple[Cell, ...]:
    """Group samples by (method, attack, strength) in first-seen order and average them."""
    from wmark.attacks import get_attack

    groups: dict[tuple[str, str, float], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.method, s.attack, s.strength), []).append(s)
    cells = []
    for (m, a, st), g in groups.items():
        param = get_attack(a).param_value(st)
        cells.append(Cell(m, a, st, param if isinstance(param, (int, float, bool)) or param is None else str(param),
                          len(g), float(np.mean([x.bit_acc for x in g])),
                          {alpha_key(al): tpr((x.p_value for x in g), al) for al in ALPHAS},
                          _mean([x.psnr for x in g]), _mean([x.ssim for x in g])))
    return tuple(cells)


OURS: tuple[str, ...] = ("wmark", "wmark-payload", "wmark-known")


def shortfalls(samples: Sequence[Sample], max_strength: float = 0.5) -> tuple[dict[str, Any], ...]:
    """Every (attack, strength <= ``max_strength``) where one of :data:`OURS` has a lower mean bit accuracy
    than a baseline **on the same images** (rivaGan runs on a subset): dicts with method, baseline, attack,
    strength, n_images, bit_acc (ours) and baseline_bit_acc, largest gap first."""
    by: dict[tuple[str, str, float], dict[int, float]] = {}
    for x in samples:
        by.setdefault((x.method, x.attack, x.strength), {})[x.image] = x.bit_acc
    out = []
    for (m, a, st), theirs in by.items():
        if m in OURS or st > max_strength:
            continue
        for o in OURS:
            mine = by.get((o, a, st), {})
            common = sorted(set(theirs) & set(mine))
            if not common:
                continue
            w, b = float(np.mean([mine[i] for i in common])), float(np.mean([theirs[i] for i in common]))
            if w < b:
                out.append({"method": o, "baseline": m, "attack": a, "strength": st, "n_images": len(common),
                            "bit_acc": w, "baseline_bit_acc": b})
    return tuple(sorted(out, key=lambda d: d["bit_acc"] - d["baseline_bit_acc"]))


def breaking_points(cells: Sequence[Cell], alpha: float = 1e-6,
                    level: float = 0.5) -> dict[str, dict[str, float | None]]:
    """method -> attack -> smallest strength where TPR at ``alpha`` falls below ``level`` (None: holds)."""
    out: dict[str, dict[str, float | None]] = {}
    for c in sorted(cells, key=lambda c: c.strength):
        if c.attack == "none":
            continue
        row = out.setdefault(c.method, {})
        if c.attack not in row:
            row[c.attack] = None
        if row[c.attack] is None and c.tpr[alpha_key(alpha)] < level:
            row[c.attack] = c.strength
    return out


def _resolve(cfg: RobustnessConfig) -> tuple[list[np.ndarray], list[str], str, tuple[str, ...], tuple[float, ...],
                                             tuple[str, ...]]:
    from wmark.attacks import registry
    from wmark.attacks.spec import check_strength

    attacks = check_attacks(cfg.attacks if cfg.attacks is not None
                            else QUICK_ATTACKS if cfg.quick else tuple(registry("image")))
    strengths = tuple(sorted(set(check_strength(s) for s in
                                 (cfg.strengths if cfg.strengths is not None
                                  else QUICK_STRENGTHS if cfg.quick else DEFAULT_STRENGTHS))))
    if not strengths:
        raise ValueError("no strengths given")
    methods = check_methods(cfg.methods if cfg.methods is not None else QUICK_METHODS if cfg.quick else DEFAULT_METHODS)
    n = cfg.n if cfg.n is not None else 3 if cfg.quick else 24
    if n < 1 or cfg.rivagan_n < 1 or cfg.jobs < 1:
        raise ValueError(f"--n, --rivagan-n and --jobs must be >= 1, got {n}, {cfg.rivagan_n} and {cfg.jobs}")
    size = QUICK_SIZE if cfg.quick else None
    folder = Path(cfg.images) if cfg.images else shared_data("kodak")
    if cfg.images is None and cfg.quick and not folder.is_dir():
        print(f"no images at {folder}: using {n} synthetic {size}x{size} images", file=sys.stderr)
        return synthetic_images(n, size, cfg.seed), [f"synthetic{i}" for i in range(n)], "synthetic", \
            attacks, strengths, methods
    images, names = load_images(folder, n, size)
    return images, names, str(folder), attacks, strengths, methods


def run_robustness(cfg: RobustnessConfig) -> RobustnessResult:
    """Run the sweep of ``cfg`` and write results.json, report.md and the PNG plots into ``cfg.out``
    (refused, before any work, where it is a file or a non-empty folder unless ``cfg.overwrite``)."""
    t0 = time.perf_counter()
    out = prepare_out(cfg.out, cfg.overwrite)
    images, names, source, attacks, strengths, methods = _resolve(cfg)
    weights = _weights_record(cfg.weights)
    runnable: dict[str, Method] = {}
    skipped: dict[str, str] = {}
    n_for: dict[str, int] = {}
    for m in methods:
        small = min(a.shape[0] * a.shape[1] for a in images)
        if small < MIN_PIXELS.get(m, 0):
            skipped[m] = f"needs images of at least {MIN_PIXELS[m]} pixels (smallest has {small})"
        else:
            try:
                runnable[m] = METHODS[m](weights=cfg.weights)
            except Exception as exc:  # noqa: BLE001 - an optional baseline: any import / load failure skips it
                if m not in OPTIONAL:
                    raise
                skipped[m] = f"not runnable here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        if m in skipped:
            print(f"skipping {m}: {skipped[m]}", file=sys.stderr)
        else:
            n_for[m] = min(len(images), cfg.rivagan_n) if m == "rivaGan" else len(images)
    total = sum(n_for.values()) * len(attacks) * len(strengths)
    per_task = len(attacks) * len(strengths)
    results: dict[tuple[str, int], tuple[list[Sample], float, float, int, float]] = {}
    with progress(total, "robustness", cfg.progress, unit="eval") as bar:
        if cfg.jobs > 1:  # (method, image) tasks over worker processes; slowest method first
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            order = sorted(runnable, key=lambda m: m != "rivaGan")
            with ProcessPoolExecutor(cfg.jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as ex:
                futs = {ex.submit(_task, m, i, images[i], attacks, strengths, cfg.seed, cfg.weights): (m, i)
                        for m in order for i in range(n_for[m])}
                for f in as_completed(futs):
                    results[futs[f]] = f.result()
                    bar.set_postfix_str(futs[f][0])
                    bar.update(per_task)
        else:
            for m, method in runnable.items():
                bar.set_postfix_str(m)
                for i in range(n_for[m]):
                    t = time.perf_counter()
                    got, p, q, n_bits = _evaluate(method, i, images[i], attacks, strengths, cfg.seed, bar.update)
                    results[m, i] = (got, p, q, n_bits, time.perf_counter() - t)
    samples: list[Sample] = []
    info: dict[str, dict[str, Any]] = {}
    for m, method in runnable.items():  # same order as a serial run, whatever the jobs
        rs = [results[m, i] for i in range(n_for[m])]
        for r in rs:
            samples += r[0]
        info[m] = {"n_images": n_for[m], "n_bits": rs[0][3] if rs else 0,
                   "p_value": method.p_value_doc, "embed_psnr": _mean([r[1] for r in rs]),
                   "embed_ssim": _mean([r[2] for r in rs]),
                   "seconds": round(sum(r[4] for r in rs), 1)}
        for v, doc in method.variants.items():
            info[v] = {**info[m], "p_value": doc, "variant_of": m}
            info[v]["n_bits"] = method.variant_bits.get(v, info[v]["n_bits"])
    cells = aggregate(samples)
    config = {"images": source, "image_names": names, "image_size": "centre square %d" % QUICK_SIZE if cfg.quick
              else "as stored", "attacks": list(attacks), "strengths": list(strengths), "methods": list(methods),
              "rivagan_n": cfg.rivagan_n, "quick": cfg.quick, "seed": cfg.seed, "alphas": list(ALPHAS),
              "jobs": cfg.jobs, "weights": weights,
              "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    notes = ("wmark TPR: Detection.p_value < alpha (its calibrated p-value, payload unknown to the detector).",
             "Baseline TPR: p = P[Binomial(32, 1/2) >= k] for k of 32 bits matching the image's own message "
             "(a known-message test, easier than wmark's unknown-payload test); undecodable images count as k = 16.",
             "PSNR / SSIM: attacked vs marked image (SSIM on luma); empty where the attack changes the size; "
             "identical images show 100 dB.",
             "Images are 8-bit quantised after embedding and after every attack.",
             "pgd is white-box against wmark's own decoder and is run for wmark only.")
    if "wmark-known" in info:
        notes += ("wmark-known: the same attacked images read with the carried payload given to the detector; "
                  "its bits come from the codeword's best-agreeing alignment only where that test detects.",)
    res = RobustnessResult(config, info, skipped, cells, breaking_points(cells), time.perf_counter() - t0, notes,
                           shortfalls(samples))
    write_outputs(res, out)
    return res


# -- outputs ----------------------------------------------------------------------------------------
def report_markdown(res: RobustnessResult) -> str:
    """The Markdown report: clean table, one table per attack, and where each method breaks."""
    cfg, methods = res.config, list(res.methods)
    by = {(c.method, c.attack, c.strength): c for c in res.cells}
    k6 = alpha_key(1e-6)
    lines = ["# Image robustness benchmark", "",
             f"{len(cfg['image_names'])} images from `{cfg['images']}` ({cfg['image_size']}), "
             f"{len(cfg['attacks'])} attacks x strengths {', '.join(f'{s:g}' for s in cfg['strengths'])}, "
             f"seed {cfg['seed']}{', quick' if cfg['quick'] else ''}; {res.elapsed_s / 60:.1f} min.", ""]
    lines += [f"- {m}: {i['n_images']} images, {i['n_bits']} bits, "
              + (f"read from {i['variant_of']}'s attacked images (time included there)" if "variant_of" in i
                 else f"{i['seconds'] / 60:.1f} min")
              + f"; p-value = {i['p_value']}"
              for m, i in res.methods.items()]
    lines += [f"- {m} skipped: {why}" for m, why in res.skipped.items()]
    w = cfg.get("weights")
    if w and "wmark" in res.methods:
        lines.append(f"- wmark image weights: {w['source']} (sha256 {w['sha256'][:16]}...)")
    if "rivaGan" in res.methods:
        lines.append(f"- rivaGan runs on the first {res.methods['rivaGan']['n_images']} images only "
                     "(`--rivagan-n`; about 4 s per decode on 2 CPU cores).")
    lines += [f"- {n}" for n in res.notes]
    lines += ["", "## Clean (no attack)", "",
              md_table(["method", "embed PSNR dB", "embed SSIM", "bit acc", "TPR@1e-3", "TPR@1e-6"],
                        [[m, fmt(res.methods[m]["embed_psnr"], 1), fmt(res.methods[m]["embed_ssim"], 3),
                          fmt(by[m, "none", 0.0].bit_acc, 3), fmt(by[m, "none", 0.0].tpr[alpha_key(1e-3)]),
                          fmt(by[m, "none", 0.0].tpr[k6])] for m in methods if (m, "none", 0.0) in by]), ""]
    lines += ["## Per attack", "", "Cells: mean bit accuracy / TPR at FPR 1e-6. PSNR / SSIM: attacked vs marked "
              f"({methods[0] if methods else '-'}'s images).", ""]
    from wmark.attacks import get_attack

    for a in cfg["attacks"]:
        spec = get_attack(a)
        rows = []
        for s in cfg["strengths"]:
            cs = [by.get((m, a, s)) for m in methods]
            first = next((c for c in cs if c is not None), None)
            param = first.param if first else spec.param_value(s)
            rows.append([f"{s:g}", f"{param:.4g}" if isinstance(param, float) else str(param),
                         *[f"{c.bit_acc:.2f} / {c.tpr[k6]:.2f}" if c else "-" for c in cs],
                         fmt(first.psnr if first else None, 1), fmt(first.ssim if first else None, 3)])
        lines += [f"### {a}", "", f"{spec.param}: {spec.mapping_doc}", "",
                  md_table(["strength", spec.param, *methods, "PSNR dB", "SSIM"], rows), ""]
    lines += _shortfall_lines(res)
    lines += ["## Where wmark breaks", "",
              "Smallest strength at which TPR at FPR 1e-6 falls below 0.5 (other methods for comparison; "
              "\"fails unattacked\": below 0.5 already without an attack).", "",
              md_table(["attack", *methods],
                        [[a, *[_break_text(res.breaks.get(m, {}), a, max(cfg["strengths"]), by.get((m, "none", 0.0)))
                               for m in methods]] for a in cfg["attacks"]]), ""]
    return "\n".join(lines)


def _shortfall_lines(res: RobustnessResult) -> list[str]:
    ours = [m for m in res.methods if m in OURS]
    others = [m for m in res.methods if m not in OURS]
    if not ours or not others:
        return []
    lines = ["## wmark vs baselines on the same images (strength <= 0.5)", "",
             "Every (attack, strength <= 0.5, clean included) where a wmark read-out's mean bit accuracy is below a "
             "baseline's on the images both ran (3 decimals; rivaGan: its subset only)."]
    if not res.shortfalls:
        return lines + ["", "None: " + ", ".join(ours) + " >= every baseline in every such cell.", ""]
    rows = [[d["method"], d["baseline"], d["attack"], f"{d['strength']:g}", str(d["n_images"]),
             f"{d['bit_acc']:.3f}", f"{d['baseline_bit_acc']:.3f}"] for d in res.shortfalls]
    return lines + ["", md_table(["wmark read-out", "baseline", "attack", "strength", "images", "wmark bit acc",
                                   "baseline bit acc"], rows), ""]


def _break_text(row: dict[str, float | None], attack: str, top: float, clean: Cell | None,
                alpha: float = 1e-6, level: float = 0.5) -> str:
    if attack not in row:
        return "-"
    if clean is not None and clean.tpr[alpha_key(alpha)] < level:
        return "fails unattacked"
    s = row[attack]
    return f"holds to {float(top)}" if s is None else f"breaks at {float(s)}"


PLOTS: dict[str, tuple[str, Callable[[Cell], float]]] = {
    "bit_accuracy.png": ("bit accuracy", lambda c: c.bit_acc),
    "tpr_1e-6.png": ("TPR @ FPR 1e-6", lambda c: c.tpr[alpha_key(1e-6)]),
}


def write_outputs(res: RobustnessResult, out: Path) -> None:
    """results.json, report.md and the :data:`PLOTS` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(res.to_json(), indent=1) + "\n")
    write_atomic(out / "report.md", report_markdown(res))
    attacks = res.config["attacks"]
    for name, (label, fn) in PLOTS.items():
        plot_curves(res.cells, attacks, fn, label, out / name)
