"""Training data of mixed-style toy images: one scene rendered in every style, composited through
random masks (the shapes SD-inpainting trains on, plus the erasure grid). Used to fine-tune the
inpainting UNet (train_sd_inpainting) and the VAE decoder (vae), so that both learn styles side by side."""
import os

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ..checkpoint import atomic_save
from ..masks import circle, grid_masks, rectangle, stroke
from .classifier import to_tensor
from .painter import render
from .world import RES, STYLES, SUBJECTS, caption_for


def random_mask(rng, size=RES):
    """One pixel mask (1, size, size): the shapes SD-inpainting trains on, plus the erasure grid."""
    kind = rng.choice(["rect", "ellipse", "stroke", "cell", "center", "full"], p=[.3, .15, .1, .3, .05, .1])
    if kind == "rect":
        w, h = (rng.uniform(0.2, 0.7, 2) * size).astype(int)
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        return rectangle(size, x0, y0, x0 + w, y0 + h)[0]
    if kind == "ellipse":
        return circle(size, *rng.uniform(0.25, 0.75, 2) * size, rng.uniform(0.12, 0.35) * size)[0]
    if kind == "stroke":
        return stroke(size, [tuple(p) for p in rng.uniform(0.1, 0.9, (3, 2)) * size], rng.uniform(0.1, 0.2) * size)[0]
    if kind == "cell":
        return grid_masks(size, 3, center=False)[rng.integers(9)]
    if kind == "center":
        return grid_masks(size, 3, center=True)[-1]
    return torch.ones(1, size, size)


def scene_bank(n, seed, path):
    """n toy layouts, each rendered in every style with the same seed: (n, styles, 64, 64, 3) uint8."""
    if os.path.exists(path):
        t = load_file(path)
        return t["images"].numpy(), t["subject"].numpy()
    rng = np.random.default_rng(seed)
    subjects = rng.integers(len(SUBJECTS), size=n)
    seeds = rng.integers(2**31, size=n)
    images = np.stack([np.stack([render(s, SUBJECTS[u], seed=int(z)) for s in STYLES])
                       for u, z in tqdm(zip(subjects, seeds), total=n, desc="scene bank")])
    atomic_save({"images": torch.as_tensor(images), "subject": torch.as_tensor(subjects)}, path)
    return images, subjects


def batch(rng, images, subjects, size, same_style=1 / 3, uncond_prob=0.1):
    """Composite images, pixel masks and captions for one training step."""
    idx = rng.integers(len(images), size=size)
    bg = rng.integers(len(STYLES), size=size)
    fg = np.where(rng.random(size) < same_style, bg, rng.integers(len(STYLES), size=size))
    masks = torch.stack([random_mask(rng) for _ in range(size)])                       # (B, 1, H, W)
    m = masks[:, 0, :, :, None].numpy() > 0.5
    comp = np.where(m, images[idx, fg], images[idx, bg])
    caps = [caption_for(STYLES[f], SUBJECTS[subjects[i]], rng) if rng.random() >= uncond_prob else ""
            for f, i in zip(fg, idx)]
    return to_tensor(comp), masks, caps


class Composites(torch.utils.data.IterableDataset):
    """Endless training batches from `batch`; each DataLoader worker draws from its own seeded stream."""

    def __init__(self, images, subjects, batch_size, seed, **kw):
        self.images, self.subjects, self.batch_size, self.seed, self.kw = images, subjects, batch_size, seed, kw

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, worker.id if worker else 0])
        while True:
            yield batch(rng, self.images, self.subjects, self.batch_size, **self.kw)
