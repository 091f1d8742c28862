"""Judging what an inpainting model paints inside a mask and keeps outside it, on the toy world
(evaluation/spatial_evaluation.py, toy_inpainting_quality): neutral photos to inpaint, the
evaluation masks, the region classifier's verdict per (image, mask, prompt), and the measures
outside the mask (max pixel difference, PSNR, seam at the border).
"""
import numpy as np
import torch

from ..masks import grid_masks, heldout_masks, mask_names
from ..models import load_pipeline
from ..sampling import generate, inpaint
from ..toyart.classifier import region_style, to_tensor
from ..toyart.painter import render
from ..toyart.world import (ARTIST_TEMPLATES_HELDOUT, ARTISTS, GENERIC_TEMPLATES_HELDOUT, PHOTO_TEMPLATES_HELDOUT,
                            STYLES, style_prompt)


def region_prompt(style, subject):
    """The held-out phrasing of `style` painting `subject` (evaluation never uses training phrasings)."""
    pool = ARTIST_TEMPLATES_HELDOUT if style in ARTISTS else PHOTO_TEMPLATES_HELDOUT if style == "photo" \
        else GENERIC_TEMPLATES_HELDOUT
    return style_prompt(style, subject, pool[0])


def region_twin(subject):
    """The neutral twin of `region_prompt`: the same held-out phrasing with no style."""
    return f"a picture of a {subject}"


def neutral_images(source_model, subjects, seed, device="cpu", **kw):
    """One photo per subject (held-out photo phrasing) from the toy text-to-image model: the same
    images whichever model (4- or 9-channel) then inpaints them."""
    pipe = load_pipeline(source_model, device=device)
    return generate(pipe, [f"a realistic photo of a {s}" for s in subjects], [seed + i for i in range(len(subjects))],
                    **kw)


def evaluation_masks(size, seed):
    """The 10 training masks and 4 held-out ones: (14, size, size) numpy, names, kinds."""
    held, held_names = heldout_masks(size, seed=seed)
    return (torch.cat([grid_masks(size), held])[:, 0].numpy(), mask_names() + held_names,
            ["grid"] * 10 + ["held-out"] * len(held))


def classifier_ceiling(clf, masks, subjects, seed):
    """Per mask, the share of true renders the classifier recognises when pasted into that mask of a
    photo of the same scene (no model involved): what a perfect inpainter would score. Thin masks
    (the stroke) leave little texture in their bounding box, so their ceiling is below 100%."""
    scenes = [seed + 50_000 + i for i in range(3)]
    fg = {s: np.stack([render(s, subj, seed=sd) for subj in subjects for sd in scenes]) for s in STYLES}
    out = []
    for m in masks > 0.5:
        mk = np.repeat(m[None], len(fg["photo"]), 0)
        hits = [(region_style(clf, to_tensor(np.where(mk[..., None], fg[s], fg["photo"])), mk) == k).mean()
                for k, s in enumerate(STYLES)]
        out.append(float(np.mean(hits)))
    return out


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

        def step(a):
            return np.concatenate([np.abs(a[:, 1:] - a[:, :-1])[pairs_h].ravel(),
                                   np.abs(a[1:] - a[:-1])[pairs_v].ravel()]).mean()
        out.append(float(step(img) - step(src)))
    return np.array(out)


def region_styles(pipe, clf, neutral, masks, subjects, styles, seeds, **kw):
    """Inpaint every (neutral image, mask) with each style's prompt. Per style: the classifier's style
    of each region, raw-output outside stats, pasted-output outside max diff and seam, pasted images."""
    n_mask = len(masks)
    images, mk = np.repeat(neutral, n_mask, 0), np.tile(masks, (len(neutral), 1, 1))
    out = {}
    for style in styles:
        prompts = [region_prompt(style, s) for s in subjects for _ in range(n_mask)]
        raw, pasted = inpaint(pipe, images, mk, prompts, seeds, desc=f"inpainting {style}", **kw)
        pred = region_style(clf, to_tensor(pasted), mk > 0.5)
        maxdiff, psnr = outside_stats(images, raw, mk)
        kept, _ = outside_stats(images, pasted, mk)
        out[style] = {"pred": pred, "raw_maxdiff": maxdiff, "raw_psnr": psnr,
                      "pasted_maxdiff": kept, "seam": seam(pasted, images, mk), "pasted": pasted}
    return out
