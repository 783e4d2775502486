"""``wmark train image``: train the encoder/decoder on random crops of ``../shared/data/train``.

Never Kodak (the evaluation set). Differentiable attack layer (kornia): JPEG, resize, crop,
rotation, blur, noise, colour jitter, a JPEG+resize+brightness combination; 8-bit rounding with a
straight-through estimate. The residual's RMS is fixed by construction (PSNR is set, not learned), so
the loss is the bit cross-entropy alone. Checkpoints every ``--ckpt-every`` steps and resumes from
``DIR/ckpt.pt``; ``--minutes`` caps wall time (the run can be resumed later).

A run is a sequence of *stages* ``(schedule_steps, stop_at)``: steps up to ``stop_at`` follow the
warm-up / cosine / attack-strength schedules of a ``schedule_steps``-step run. The shipped weights
come from :data:`RECIPES` ``["shipped"]`` (seed 0, batch 8, 2 CPU threads), the default; ``--steps N``
is the single stage ``(N, N)``. On one machine and thread count a run is bit-reproducible, resumed
or not; ``card.json`` records the recipe and the losses of the first steps (``first_losses``).
"""
from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

#: named stage tables ``((schedule_steps, stop_at), ...)``; "shipped" made weights/default.pt
RECIPES: dict[str, tuple[tuple[int, int], ...]] = {"shipped": ((2400, 200), (1300, 1300))}
DEFAULT_RECIPE = "shipped"
#: the shipped run's batch and CPU threads (the defaults of ``wmark train image``)
DEFAULT_BATCH, DEFAULT_THREADS = 8, 2
#: how many first-step losses the card records
FIRST_LOSSES = 4


def stages_for(recipe: str | None = DEFAULT_RECIPE, steps: int | None = None) -> tuple[tuple[int, int], ...]:
    """The stage table of ``recipe``, or the single stage ``(steps, steps)`` where ``steps`` is given."""
    if steps is not None:
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        return ((int(steps), int(steps)),)
    if recipe not in RECIPES:
        raise ValueError(f"unknown training recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return RECIPES[recipe]


def _ste(x, fn):
    """Straight-through: forward fn(x), backward identity."""
    return x + (fn(x) - x).detach()


def _u(gen, lo: float, hi: float) -> float:
    import torch

    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def make_attack(gen, strength: float = 1.0, heavy: bool = False):
    """A random differentiable attack and its name. The attack maps marked [B, 3, H, W] to
    ``(attacked [B, 3, h, w], (dy, dx))``: the native-pixel offset of a crop (0, 0 otherwise).
    ``heavy`` adds a blur -> noise -> JPEG chain and widens the noise range (decoder fine-tuning)."""
    import kornia
    import torch
    import torch.nn.functional as F

    names = ["none", "jpeg", "resize", "crop", "rotate", "blur", "noise", "color", "combo"]
    probs = [0.06, 0.2, 0.12, 0.08, 0.08, 0.12, 0.1, 0.1, 0.14]
    if heavy:
        names, probs = names + ["degrade"], [0.04, 0.14, 0.1, 0.06, 0.06, 0.1, 0.12, 0.08, 0.1, 0.2]
    name = names[int(torch.multinomial(torch.tensor(probs), 1, generator=gen))]
    s = strength
    noise_max = 0.12 if heavy else 0.05

    def quant(x):
        return _ste(x.clamp(0, 1), lambda t: torch.round(t * 255) / 255)

    def jpeg(x, q):
        qt = torch.full((x.shape[0],), q, device=x.device)
        return kornia.enhance.jpeg_codec_differentiable(x.clamp(0, 1), qt)

    def rs(x, f):  # down and back up to the same size
        h, w = x.shape[-2:]
        small = F.interpolate(x, size=(max(16, int(h * f)), max(16, int(w * f))), mode="bilinear",
                              align_corners=False, antialias=True)
        return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)

    def crop(x, area):
        h, w = x.shape[-2:]
        a = math.exp(_u(gen, -0.3, 0.3))
        ch = max(64, min(h, int(round(h * math.sqrt(area) * a))))
        cw = max(64, min(w, int(round(w * math.sqrt(area) / a))))
        y0 = int(torch.randint(h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(w - cw + 1, (1,), generator=gen))
        return x[..., y0:y0 + ch, x0:x0 + cw], (y0, x0)

    def blur(x, sig, k):
        return kornia.filters.gaussian_blur2d(x, (k, k), (sig, sig))

    def noise(x, sigma_max):  # draws the noise, then its sigma in [0, sigma_max] (the seeded order)
        z = torch.randn(x.shape, generator=gen).to(x.device)
        return x + z * _u(gen, 0.0, sigma_max)

    def color(x):
        b = _u(gen, 1 - 0.35 * s, 1 + 0.45 * s)
        c = _u(gen, 1 - 0.3 * s, 1 + 0.3 * s)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - m) * c + m) * b
        sat = _u(gen, 0.0, 1.5)
        g = x.mean(1, keepdim=True)
        return (g + (x - g) * sat).clamp(0, 1)

    def attack(x):
        x = quant(x)
        off = (0, 0)
        if name == "jpeg":
            x = jpeg(x, _u(gen, 90 - 60 * s, 90))
        elif name == "resize":
            x = rs(x, _u(gen, 1 - 0.6 * s, 1.0))
        elif name == "crop":
            x, off = crop(x, _u(gen, 1 - 0.75 * s, 1.0))
        elif name == "rotate":
            ang = torch.full((x.shape[0],), _u(gen, -1.5 * s, 1.5 * s), device=x.device)
            x = kornia.geometry.transform.rotate(x, ang, padding_mode="zeros")
        elif name == "blur":
            x = blur(x, _u(gen, 0.3, 0.3 + 1.4 * s), 7)
        elif name == "noise":
            x = noise(x, noise_max * s)
        elif name == "color":
            x = color(x)
        elif name == "combo":
            x = jpeg(x, _u(gen, 90 - 40 * s, 90))
            x = rs(x, _u(gen, 1 - 0.4 * s, 1.0))
            x = x * _u(gen, 0.8, 1.3)
        elif name == "degrade":
            x = blur(x, _u(gen, 0.3, 0.3 + 1.9 * s), 9)
            x = quant(noise(x, 0.12 * s))
            x = jpeg(x, _u(gen, 90 - 50 * s, 90))
        if name != "crop" and float(torch.rand((), generator=gen)) < 0.5:
            x, off = crop(x, _u(gen, 0.5, 1.0))  # translation: exercises the shift alignment
        return x.clamp(0, 1), off

    return attack, name


def null_bias(model, images, gen, n: int = 512, batch: int = 16, crop: int = 192):
    """Mean decoder logits [n_bits] on unmarked training crops (subtracted at detection)."""
    import torch

    from wmark.image.data import sample_batch
    from wmark.image.model import read_logits

    model.eval()
    acc = []
    with torch.no_grad():
        for _ in range(max(1, n // batch)):
            x = sample_batch(images, batch, crop, gen).to(model.device)
            acc.append(read_logits(model.decoder, x))
    return torch.cat(acc).mean(0)


def train(out: str, *args, threads: int | None = DEFAULT_THREADS, **kwargs) -> Path:
    """Train (or resume) and write ``out/default.pt``, ``default.sha256`` and ``card.json``, with torch
    at ``threads`` CPU threads (given back afterwards); the arguments are those of :func:`_train`."""
    from wmark.runtime.threads import set_threads

    restore = set_threads(threads)
    try:
        return _train(out, *args, **kwargs)
    finally:
        restore()


def _train(out: str, seed: int = 0, steps: int | None = None, batch: int = DEFAULT_BATCH, crop: int = 256,
          lr: float = 2e-3, minutes: float | None = None, data: str | None = None, ckpt_every: int = 200,
          device: str | None = None, finetune_decoder: str | None = None,
          heavy: bool = False, log=print, recipe: str | None = DEFAULT_RECIPE,
          stages: tuple[tuple[int, int], ...] | None = None, progress: bool = True) -> Path:
    """Train (or resume) and write ``out/default.pt``, ``default.sha256`` and ``card.json``.

    ``stages`` (default :func:`stages_for` ``(recipe, steps)``): see the module docstring.
    ``finetune_decoder`` (a .pt file or a shipped name): start from those weights, freeze the encoder
    (marks stay bit-identical) and train the decoder alone at full attack strength."""
    import torch
    import torch.nn.functional as F

    from wmark.assets import sha256_bytes, write_atomic, write_weights
    from wmark.runtime.progress import progress as progress_bar

    stages = tuple(stages) if stages is not None else stages_for(recipe, steps)
    if any(stop < 1 or sched < 1 for sched, stop in stages) or [s for _, s in stages] != sorted(s for _, s in stages):
        raise ValueError(f"stages must be (schedule_steps >= 1, stop_at >= 1) with increasing stop_at, got {stages}")
    total = stages[-1][1]
    from wmark.image.data import load_images, sample_batch, training_dir
    from wmark.image.model import Config, ImageWatermarker

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    folder = Path(data) if data else training_dir()
    images = load_images(folder)
    log(f"loaded {len(images)} training images from {folder}; device {dev}")

    torch.manual_seed(seed)
    base_sha = None
    if finetune_decoder:
        from wmark.image.model import weights_blob

        src = Path(finetune_decoder)
        blob0 = src.read_bytes() if src.is_file() else weights_blob(finetune_decoder)
        base_sha = sha256_bytes(blob0)
        model = ImageWatermarker.from_bytes(blob0).to(dev)
        model.encoder.requires_grad_(False)
        log(f"fine-tuning the decoder of {finetune_decoder} (sha256 {base_sha[:16]}...); encoder frozen")
    else:
        model = ImageWatermarker(Config()).to(dev)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    step, t_used, first_losses = 0, 0.0, []
    ck = outp / "ckpt.pt"
    if ck.is_file():
        state = torch.load(ck, map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        step, t_used = state["step"], state.get("t_used", 0.0)
        first_losses = list(state.get("first_losses", []))
        log(f"resumed from {ck} at step {step}")

    def save_ckpt():
        buf = io.BytesIO()
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state(),
                    "torch_rng": torch.get_rng_state(), "step": step, "t_used": t_used + time.time() - t0,
                    "first_losses": first_losses}, buf)
        write_atomic(ck, buf.getvalue())

    t0 = time.time()
    n = model.config.n_bits
    ema_acc, ema_loss = 0.5, 0.7
    capped = False
    bar = progress_bar(total, "train image", progress, unit="step", initial=min(step, total))
    for steps, stop_at in stages:
        warm = max(1, steps // 10)
        while step < stop_at and not capped:
            if minutes is not None and time.time() - t0 > minutes * 60:
                log(f"time cap reached at step {step}")
                capped = True
                break
            frac = step / steps
            for g in opt.param_groups:  # warmup + cosine
                g["lr"] = lr * min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
            strength = min(1.0, max(0.0, (step - warm) / (2 * warm))) if step >= warm else 0.0
            boost = 1.0 + 3.0 * max(0.0, 1.0 - step / (0.4 * steps))  # strong mark first, target RMS later
            if finetune_decoder:
                strength, boost = 1.0, 1.0
            model.train()
            x = sample_batch(images, batch, crop, gen).to(dev)
            bits = (torch.rand((batch, n), generator=gen) < 0.5).float().to(dev)
            if step >= warm or finetune_decoder:
                attack, name = make_attack(gen, strength, heavy)
            else:
                attack, name = make_attack(gen, 0.0, heavy)[0], "quant"
            _, logits = model(x, bits, attack, rms_scale=boost)
            loss = F.binary_cross_entropy_with_logits(logits, bits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            acc = float(((logits.detach() > 0).float() == bits).float().mean())
            ema_acc, ema_loss = 0.98 * ema_acc + 0.02 * acc, 0.98 * ema_loss + 0.02 * float(loss.detach())
            if step < FIRST_LOSSES:
                first_losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == 1:
                bar.set_postfix_str(f"loss {ema_loss:.4f} acc {ema_acc:.4f}", refresh=False)
                log(f"step {step}/{total} loss {ema_loss:.4f} acc {ema_acc:.4f} [{name} {acc:.3f}] "
                    f"s={strength:.2f} boost={boost:.2f} {time.time() - t0:.0f}s")
            if step % ckpt_every == 0:
                save_ckpt()
    bar.close()
    save_ckpt()
    bias_gen = torch.Generator().manual_seed(seed + 1)
    model.null_bias.copy_(null_bias(model, images, bias_gen))
    model.eval()
    blob = model.cpu().to_bytes()
    digest = write_weights(outp, "default", blob)
    card = {"config": model.config.to_dict(), "seed": seed, "steps_done": step, "steps": total,
            "stages": [list(st) for st in stages], "threads": torch.get_num_threads(), "batch": batch,
            "crop": crop, "lr": lr, "data": str(folder.name), "n_images": len(images),
            "train_seconds": round(t_used + time.time() - t0, 1), "device": str(dev),
            "final_train_acc_ema": round(ema_acc, 4), "sha256": digest,
            "params": sum(p.numel() for p in model.parameters()), "heavy_attacks": heavy,
            "finetune_decoder_from": base_sha, "first_losses": first_losses}
    write_atomic(outp / "card.json", json.dumps(card, indent=2) + "\n")
    log(f"wrote {outp / 'default.pt'} ({len(blob) / 1e6:.2f} MB, sha256 {digest[:16]}...)")
    return outp / "default.pt"
