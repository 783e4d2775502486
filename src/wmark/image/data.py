"""Training and calibration data for the image watermark: the shared training photos as uint8
tensors and random-scale crops of them."""
from __future__ import annotations

import math
from pathlib import Path

from wmark.assets import list_images, luma, shared_data


def training_dir() -> Path:
    """The training photos: ``shared_data("train")`` (never Kodak, the evaluation set)."""
    return shared_data("train")


def load_images(folder: str | Path, max_side: int = 640):
    """All images of ``folder`` as uint8 tensors [3, H, W] (refuses a Kodak folder)."""
    import numpy as np
    import torch
    from PIL import Image

    folder = Path(folder)
    if "kodak" in str(folder).lower():
        raise ValueError("refusing to train on Kodak: it is the evaluation set")
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"no training images in {folder}")
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.LANCZOS)
            out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous())
    return out


def sample_batch(images, batch: int, crop: int, gen):
    """[batch, 3, crop, crop] float crops at random scales (0.3..1 of the source resolution)."""
    import torch
    import torch.nn.functional as F

    out = []
    for _ in range(batch):
        img = images[int(torch.randint(len(images), (1,), generator=gen))]
        h, w = img.shape[-2:]
        smin = max(crop / min(h, w), 0.3)
        s = smin + float(torch.rand((), generator=gen)) * max(1.0 - smin, 0.0)
        aspect = math.exp((float(torch.rand((), generator=gen)) - 0.5) * 0.6)
        ch = min(h, int(round(crop / s * math.sqrt(aspect))))
        cw = min(w, int(round(crop / s / math.sqrt(aspect))))
        y0 = int(torch.randint(h - ch + 1, (1,), generator=gen))
        x0 = int(torch.randint(w - cw + 1, (1,), generator=gen))
        patch = img[:, y0:y0 + ch, x0:x0 + cw].float()[None] / 255.0
        patch = F.interpolate(patch, size=(crop, crop), mode="bilinear", align_corners=False, antialias=True)
        if float(torch.rand((), generator=gen)) < 0.5:
            patch = patch.flip(-1)
        if float(torch.rand((), generator=gen)) < 0.1:  # some grayscale covers
            patch = luma(patch).expand(-1, 3, -1, -1)
        out.append(patch)
    return torch.cat(out).clamp(0, 1)
