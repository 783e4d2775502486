"""Regeneration attack: a tiny convolutional autoencoder (4x down, 8-channel bottleneck, width 32) shipped in
``wmark/attacks/weights/regen_ae.pt`` (sha256 in ``regen_ae.sha256``), trained on random crops of
``../shared/data/train`` (never Kodak) with ``wmark attack train-regen --out DIR``.

Encoding-decoding through it keeps the picture and discards the fine detail a mark lives in, the
cheap stand-in for the VAE / diffusion regeneration attacks of WAVES.
"""
from __future__ import annotations

import io
import json
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

WEIGHTS = "regen_ae"


class TinyAE(nn.Module):
    """RGB autoencoder (4x-pooled base + learned detail from an 8-channel latent at 1/4 resolution):
    ``forward(x [B, 3|1, H, W] in [0, 1]) -> [B, same C, H, W]`` (any H, W)."""

    def __init__(self, width: int = 32, latent: int = 8):
        super().__init__()
        self.width, self.latent = width, latent
        w = width
        self.enc = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, w, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, w, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, latent, 3, padding=1),
        )
        self.dec = nn.Sequential(
            nn.Conv2d(latent, w, 3, padding=1), nn.GELU(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(w, 3, 3, padding=1),
        )
        nn.init.zeros_(self.dec[-1].weight)
        nn.init.zeros_(self.dec[-1].bias)  # starts as the pooled-and-upsampled image

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (h, w) = x.shape[1], x.shape[-2:]
        rgb = x.expand(-1, 3, -1, -1) if c == 1 else x[:, :3]
        ph, pw = (-h) % 4, (-w) % 4
        z = F.pad(rgb, (0, pw, 0, ph), mode="replicate") if ph or pw else rgb
        # only a 4x-pooled copy and the 8-channel bottleneck get through: no full-resolution path
        base = F.interpolate(F.avg_pool2d(z, 4), scale_factor=4, mode="bilinear", align_corners=False)
        y = (base + self.dec(torch.tanh(self.enc(z))))[..., :h, :w]
        return y.mean(1, keepdim=True) if c == 1 else y

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        sd = {k: v.detach().cpu().half() for k, v in self.state_dict().items()}
        torch.save({"width": self.width, "latent": self.latent, "state_dict": sd}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "TinyAE":
        d = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        m = cls(d["width"], d["latent"])
        m.load_state_dict({k: v.float() for k, v in d["state_dict"].items()})
        return m.eval()


@lru_cache(maxsize=2)
def load_autoencoder(name: str = WEIGHTS) -> TinyAE:
    """The shipped autoencoder (sha256-verified), cached. Raises ValueError where it is not shipped."""
    from wmark.assets import shipped_blob

    try:
        blob = shipped_blob("wmark.attacks", name, "autoencoder weights")
    except FileNotFoundError:
        raise ValueError(f"attack 'regen_ae' needs the shipped autoencoder weights/{name}.pt, which this "
                         "install lacks (train one: wmark attack train-regen --out DIR), or pass autoencoder=") from None
    return TinyAE.from_bytes(blob)


def _crops(images: list[torch.Tensor], n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n random crops [n, 3, size, size] in [0, 1] (random flips) from uint8 images [3, H, W]."""
    out = []
    for i in torch.randint(len(images), (n,), generator=g).tolist():
        im = images[i]
        h, w = im.shape[-2:]
        t = int(torch.randint(h - size + 1, (1,), generator=g))
        l = int(torch.randint(w - size + 1, (1,), generator=g))
        c = im[:, t:t + size, l:l + size].float() / 255.0
        out.append(c.flip(-1) if bool(torch.rand(1, generator=g) < 0.5) else c)
    return torch.stack(out)


def train_autoencoder(out: str, steps: int = 3000, batch: int = 16, crop: int = 96, lr: float = 2e-3,
                      seed: int = 0, minutes: float | None = None, data: str | None = None,
                      device: str | None = None, progress: bool = True) -> dict:
    """Train :class:`TinyAE` on random crops of the training folder (never Kodak); write
    ``OUT/regen_ae.pt``, ``OUT/regen_ae.sha256`` and ``OUT/card.json``. Returns the card.
    ``progress``: a bar with ETA on stderr."""
    from wmark.assets import write_atomic, write_weights
    from wmark.image.data import load_images, training_dir
    from wmark.image.quality import psnr

    folder = Path(data) if data else training_dir()
    if not folder.is_dir():
        raise ValueError(f"training folder not found: {folder}")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images = [im for im in load_images(folder) if min(im.shape[-2:]) >= crop]
    held, train_set = images[:16], images[16:]
    model = TinyAE().to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    from wmark.runtime.progress import progress as progress_bar

    t0, step = time.time(), 0
    bar = progress_bar(steps, "train regen_ae", progress, unit="step")
    for step in range(1, steps + 1):
        x = _crops(train_set, batch, crop, g).to(dev)
        y = model(x)
        loss = F.l1_loss(y, x) + F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
        if step % 200 == 0:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
        if minutes is not None and time.time() - t0 > 60 * minutes:
            break
    bar.close()
    model = model.cpu().eval()
    blob = model.to_bytes()
    shipped = TinyAE.from_bytes(blob)  # evaluate what ships (fp16 weights)
    with torch.no_grad():
        xv = _crops(held, 64, crop, torch.Generator().manual_seed(1234))
        heldout_psnr = psnr(shipped(xv).clamp(0, 1), xv, peak=1.0)
    o = Path(out)
    digest = write_weights(o, WEIGHTS, blob)
    card = {"model": "TinyAE", "width": model.width, "latent": model.latent, "steps": step, "batch": batch,
            "crop": crop, "lr": lr, "seed": seed, "data": folder.name, "heldout_psnr_db": round(heldout_psnr, 2),
            "bytes": len(blob), "sha256": digest,
            "command": f"wmark attack train-regen --out DIR --steps {steps} --batch {batch} --crop {crop} --seed {seed}"}
    write_atomic(o / "card.json", json.dumps(card, indent=2) + "\n")
    print(json.dumps(card))
    return card
