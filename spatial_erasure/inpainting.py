"""Inpainting with diffusers' pipeline (4-channel: blended loop; 9-channel: mask inputs), exact
paste-back, and the region measures spatial evaluations use.

    raw, pasted = inpaint(pipe, images, masks, prompts, seeds)

`raw` is what the model produced everywhere (what it preserves outside the mask on its own);
`pasted` keeps every pixel outside the mask exactly as in `images`.
"""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .distributed import map_batches
from .sampling import TOY_GUIDANCE, TOY_STEPS


@torch.no_grad()
def inpaint(pipe, images, masks, prompts, seeds, num_inference_steps=TOY_STEPS, guidance_scale=TOY_GUIDANCE,
            batch_size=32, desc=None):
    """images uint8 (N, H, W, 3); masks (N, 1, H, W) or (N, H, W), 1 = repaint. Returns (raw, pasted) uint8."""
    n = len(images)
    if not (len(masks) == len(prompts) == len(seeds) == n):
        raise ValueError(f"{n} images, {len(masks)} masks, {len(prompts)} prompts, {len(seeds)} seeds: give one each")
    masks = np.asarray(masks).reshape(n, *np.asarray(images).shape[1:3]) > 0.5
    h, w = masks.shape[1:]

    def batch(sl):
        gens = [torch.Generator(pipe.device).manual_seed(int(s)) for s in seeds[sl]]
        out = pipe(list(prompts[sl]), image=[Image.fromarray(im) for im in images[sl]],
                   mask_image=[Image.fromarray(m.astype(np.uint8) * 255) for m in masks[sl]], height=h, width=w,
                   generator=gens, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                   strength=1.0, output_type="np").images
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    raw = map_batches(batch, n, batch_size, desc)     # split across processes under `accelerate launch`
    pasted = np.where(masks[..., None], raw, images)
    return raw, pasted


def crop_regions(x, masks, size):
    """(N, 3, H, W) and masks (N, H, W) bool -> (N, 3, size, size): each mask's bounding box, outside
    pixels of the box kept (the classifier judges the region as a picture), resized."""
    out = []
    for img, m in zip(x, masks):
        ys, xs = np.nonzero(m)
        box = img[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1][None]
        out.append(F.interpolate(box, size=(size, size), mode="bilinear", align_corners=False, antialias=True))
    return torch.cat(out)


def outside_stats(before, after, masks):
    """Per image: max absolute pixel difference and PSNR (dB) over the pixels outside the mask."""
    d = np.abs(before.astype(np.int16) - after.astype(np.int16))
    out = ~np.asarray(masks, bool)
    maxdiff = np.array([di[o].max() if o.any() else 0 for di, o in zip(d, out)])
    mse = np.array([(di[o].astype(np.float64) ** 2).mean() if o.any() else 0.0 for di, o in zip(d, out)])
    psnr = np.where(mse > 0, 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12)), np.inf)
    return maxdiff, psnr


def seam(images, sources, masks):
    """Per image: mean |difference| between horizontally/vertically adjacent pixels that straddle the
    mask border, minus the same in the source image (0 = the border is as smooth as the source's)."""
    m = np.asarray(masks, bool)
    out = []
    for img, src, mk in zip(images.astype(np.float64), sources.astype(np.float64), m):
        pairs_h, pairs_v = mk[:, 1:] != mk[:, :-1], mk[1:] != mk[:-1]
        if not (pairs_h.any() or pairs_v.any()):
            out.append(0.0)
            continue
        d = lambda a: np.concatenate([np.abs(a[:, 1:] - a[:, :-1])[pairs_h].ravel(),  # noqa: E731
                                      np.abs(a[1:] - a[:-1])[pairs_v].ravel()]).mean()
        out.append(float(d(img) - d(src)))
    return np.array(out)


def full_mask_generate(pipe, prompts, seeds, size, **kw):
    """Text-to-image through an inpainting pipeline (whole image masked): works for 4- and 9-channel UNets."""
    n = len(prompts)
    grey = np.full((n, size, size, 3), 127, np.uint8)
    return inpaint(pipe, grey, np.ones((n, size, size)), prompts, seeds, **kw)[0]
