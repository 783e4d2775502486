"""Named loop configurations (``wmark loop --list``). Each entry builds its config on demand.

``theory-*`` presets reproduce the closed forms of the self-consuming Gaussian and categorical
loops (see :mod:`wmark.loop.theory` and ``tests/loop/test_loop_theory.py``);
``demo-*`` presets are small and fast and show the watermark policies (the *toy* marker for the
Gaussian ones, the product's marks for `demo-text` and `demo-image`). Presets with a marker use the
public demo key (``key: "demo"``) so that they are reproducible examples; a config without ``key``
gets a fresh random one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from wmark.loop.config import POLICY_NAMES, LoopConfig


@dataclass(frozen=True)
class Preset:
    """A registry entry: name, one-line description, config factory."""

    name: str
    description: str
    build: Callable[[], LoopConfig]


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str, **config: Any) -> Preset:
    """Register a preset whose config is ``LoopConfig(name=name, **config)``."""
    if name in PRESETS:
        raise ValueError(f"preset already registered: {name!r}")
    PRESETS[name] = Preset(name, description, lambda: LoopConfig.from_dict({"name": name, **config}))
    return PRESETS[name]


def preset_names() -> list[str]:
    """All preset names, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> LoopConfig:
    """The config of preset ``name``; ValueError listing the known names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(preset_names())})")
    return PRESETS[name].build()


_G1 = {"family": "gaussian", "data": {"d": 1}, "model": {"unbiased": True}}

register_preset(
    "theory-gaussian-n20", "1-D Gaussian, n=20, unbiased, lam=1, fully synthetic: E[log var] falls "
    "0.0535 per generation", **_G1, n_real=20, generations=100, seeds=2000)
register_preset(
    "theory-gaussian-lam08", "1-D Gaussian, n=20, lam=0.8 (also on real draws): E[var_10] = 0.107, "
    "Var(mu_t) -> 0.2", **_G1, n_real=20, lam=0.8, bias_real=True, generations=30, seeds=4000)
register_preset(
    "theory-gaussian-replace", "1-D Gaussian, n=100, replace: n E[mu_t^2] = t",
    **_G1, n_real=100, synthetic="replace", generations=20, seeds=4000)
register_preset(
    "theory-gaussian-accumulate", "1-D Gaussian, n=100, accumulate: n E[mu_t^2] -> pi^2/6",
    **_G1, n_real=100, synthetic="accumulate", generations=20, seeds=4000)
for _n0 in (100, 1000):
    register_preset(
        f"theory-fresh-init{_n0}", f"Gaussian d=100, fresh data n_r=100 n_s=900, initial n={_n0}: "
        "final W2 about 3.5 whatever the initial size",
        family="gaussian", data={"d": 100}, loop="fresh_data", n_real=100, n_syn=900, n_init=_n0,
        generations=30, seeds=4)
register_preset(
    "theory-categorical", "Zipf(1.1), 1000 categories, n=1e4, fully synthetic: support only shrinks "
    "(the paper's t = 0, 1, 10 are fits 1, 2, 11)",
    family="categorical", data={"k": 1000, "exponent": 1.1}, n_real=10_000, generations=11, seeds=100)
register_preset(
    "demo-gaussian", "small fast demo: 2-D Gaussian, n=50, none/keep/strip/drop with the toy marker",
    family="gaussian", data={"d": 2}, n_real=50, generations=10, seeds=8, arms=list(POLICY_NAMES),
    marker="toy-dither", marker_params={"delta": 0.5, "width": 0.3}, key="demo")
register_preset(
    "demo-gmm", "2-D ring of 8 Gaussians (EM), fully synthetic, n=500: recall falls; toy marker arms",
    family="gmm", data={"k": 8}, n_real=500, generations=10, seeds=4, arms=list(POLICY_NAMES),
    marker="toy-dither", marker_params={"delta": 0.25, "width": 0.3}, key="demo", eval={"n_eval": 500})
register_preset(
    "gmm-fresh", "2-D ring of 8 Gaussians, fresh data (n_r=250, n_s=250): the Frechet distance stays bounded",
    family="gmm", data={"k": 8}, loop="fresh_data", n_real=250, n_syn=250, generations=10, seeds=4,
    eval={"n_eval": 500})
register_preset(
    "demo-kde", "1-D Gaussian data, memorising KDE learner, real set + synthetic: the kept toy mark is "
    "inherited by the model's own samples; strip matches none",
    family="gaussian", data={"d": 1}, model={"kind": "kde", "bandwidth": 0.005}, loop="synthetic_augmentation",
    n_real=100, n_syn=200, generations=10, seeds=8, arms=list(POLICY_NAMES), marker="toy-dither",
    marker_params={"delta": 0.5, "width": 0.1}, key="demo")
_TEXT = dict(family="text", marker="text-kgw", marker_params={"scheme": "kgw-lefthash", "gamma": 0.25, "delta": 3.0},
             key="demo")
register_preset(
    "demo-text", "built-in LM fine-tuned on its own samples (48 x 48 tokens), fully synthetic, 5 generations: "
    "KGW-marked text kept / stripped (de-bias weights) / dropped vs none; inherited green z and radioactivity",
    **_TEXT, data={"length": 48, "n_val": 16}, model={"steps": 12, "lr": 2e-3, "batch_size": 8, "seq_len": 64},
    n_real=48, generations=5, seeds=2, arms=list(POLICY_NAMES), eval={"n_eval": 32, "n_mark": 48})
register_preset(
    "text-mad", "longer text loop (bench/README.md): 96 x 64 tokens per generation, 10 generations, 3 seeds, "
    "fully synthetic, none/keep/strip/drop with KGW (delta 3)",
    **_TEXT, data={"length": 64, "n_val": 32}, model={"steps": 20, "lr": 2e-3, "batch_size": 8, "seq_len": 64},
    n_real=96, generations=10, seeds=3, arms=list(POLICY_NAMES), eval={"n_eval": 64, "n_mark": 96})
_IMAGE = dict(family="image", data={"size": 64}, marker="image-wm", marker_params={"alpha": 1e-3}, key="demo")
register_preset(
    "demo-image", "conv VAE on 128 MNIST digits at 64 x 64, fully synthetic, 5 generations: the product's "
    "image mark kept / stripped vs none; inherited mark (detection, bit accuracy), FD, spectrum",
    **_IMAGE, model={"ch": 16, "batch_size": 32, "steps_init": 300, "steps": 50}, n_real=128, generations=5,
    seeds=1, arms=["none", "keep", "strip"], eval={"n_eval": 256, "n_mark": 128})
_IMAGE_MAD = dict(**_IMAGE, model={"ch": 16, "batch_size": 64, "steps_init": 1000, "steps": 200}, generations=15,
                  seeds=2, arms=list(POLICY_NAMES), eval={"n_eval": 500, "n_mark": 250})
register_preset(
    "image-mad", "longer image loop (bench/README.md; 1-2 hours on 2 CPU cores): conv VAE on 500 MNIST digits, fully "
    "synthetic, 15 generations, 2 seeds, none/keep/strip/drop with the product's image mark",
    **_IMAGE_MAD, n_real=500)
register_preset(
    "image-mad-fresh", "image-mad with fresh data: 250 new real + 250 synthetic digits per generation",
    **_IMAGE_MAD, loop="fresh_data", n_real=250, n_syn=250, n_init=500)
#: the path a scraped image travels: downscaled to 3/4 per side (resize strength 1/3: scale 0.75, back up
#: to 64 px) then re-encoded as JPEG quality 75 (jpeg strength 0.1875); ``wmark attack list`` has the mappings
WILD_CHANNEL = ({"attack": "resize", "strength": 1 / 3}, {"attack": "jpeg", "strength": 0.1875})
register_preset(
    "image-mad-wild", "image-mad through a channel (resize 0.75 then JPEG q75) before re-ingestion: the arms "
    "detect / strip / drop what came through; 1-2 hours on 2 CPU cores",
    **_IMAGE_MAD, n_real=500, channel=list(WILD_CHANNEL))
register_preset(
    "demo-image-wild", "demo-image (all four policies) through the image-mad-wild channel (resize 0.75, JPEG q75): "
    "~3 min on one core",
    **{**_IMAGE, "arms": list(POLICY_NAMES)}, model={"ch": 16, "batch_size": 32, "steps_init": 300, "steps": 50},
    n_real=128, generations=5, seeds=1, eval={"n_eval": 256, "n_mark": 128}, channel=list(WILD_CHANNEL))
