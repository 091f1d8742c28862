"""Can a toy model paint a prompted style inside a mask? Region-classifier check for inpainting.

Neutral images (held-out photo phrasings, from the toy text-to-image model) are inpainted inside every grid mask and the held-out
masks with each style's held-out prompt; the bundled classifier judges the mask's bounding box.
Bar (issue 4): the 9-channel toy inpainting model paints the prompted style in >= 85% of regions.

    python -m spatial_erasure.toyart.inpaint_quality --model models/toyart-sd-inpainting
"""
import argparse
import os
import sys

import numpy as np
import torch

from ..inpainting import inpaint, outside_stats, seam
from ..masks import grid_masks, heldout_masks, mask_names
from ..models import MODELS_DIR, TOY_CLASSIFIER, TOY_MODEL, describe, load_pipeline
from ..reports import image_grid, write_json
from ..sampling import TOY_GUIDANCE, TOY_STEPS, generate
from .classifier import load_classifier, predict, region_style, to_tensor
from .world import ARTISTS, ARTIST_TEMPLATES_HELDOUT, GENERIC_TEMPLATES_HELDOUT, PHOTO_TEMPLATES_HELDOUT, STYLES, \
    render, style_prompt

TOY_INPAINTING = str(MODELS_DIR / "toyart-sd-inpainting")


def region_prompt(style, subject):
    pool = ARTIST_TEMPLATES_HELDOUT if style in ARTISTS else PHOTO_TEMPLATES_HELDOUT if style == "photo" \
        else GENERIC_TEMPLATES_HELDOUT
    return style_prompt(style, subject, pool[0])


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


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--model", default=TOY_INPAINTING, help="toy pipeline folder, 9- or 4-channel (default: %(default)s)")
    a("--source_model", default=TOY_MODEL, help="text-to-image model of the neutral images (default: bundled toy)")
    a("--subjects", nargs="*", default=["house", "boat", "tree", "flower"], help="one neutral image each")
    a("--num_inference_steps", type=int, default=TOY_STEPS, help="sampling steps (default: %(default)s)")
    a("--guidance_scale", type=float, default=TOY_GUIDANCE, help="CFG scale (default: %(default)s)")
    a("--seed", type=int, default=3000, help="first seed (default: %(default)s)")
    a("--min_region_acc", type=float, default=0.85, help="bar: regions in the prompted style (default: 0.85)")
    a("--out", default="results/toyart_inpaint_quality", help="output folder (default: %(default)s)")
    a("--device", default="cpu", help="torch device; the README's numbers are from cpu (default: %(default)s)")
    return p.parse_args(argv)


def main(args):
    clf = load_classifier(TOY_CLASSIFIER)
    pipe = load_pipeline(args.model, task="inpaint", device=args.device)
    print(describe(pipe))
    kw = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    neutral = neutral_images(args.source_model, args.subjects, args.seed, device=args.device, **kw)
    masks, names, kinds = evaluation_masks(size, args.seed)
    seeds = [args.seed + 100 + i for i in range(len(neutral) * len(masks))]
    res = region_styles(pipe, clf, neutral, masks, args.subjects, STYLES, seeds, **kw)
    acc = {s: float((r["pred"] == STYLES.index(s)).mean()) for s, r in res.items()}
    held = np.array([k == "held-out" for k in kinds] * len(neutral))
    report = {"model": describe(pipe), "args": vars(args), "cases_per_style": len(seeds), "masks": names,
              "region_style_acc": acc, "mean_region_style_acc": float(np.mean(list(acc.values()))),
              "min_region_style_acc": min(acc.values()),
              "heldout_mask_acc": float(np.mean([(r["pred"][held] == STYLES.index(s)).mean() for s, r in res.items()])),
              "neutral_is_photo": float((predict(clf, to_tensor(neutral))[0].argmax(1) == STYLES.index("photo"))
                                        .float().mean()),
              "raw_outside_psnr_median": float(np.median(np.concatenate([r["raw_psnr"] for r in res.values()]))),
              "pasted_outside_maxdiff": int(max(r["pasted_maxdiff"].max() for r in res.values())),
              "seam_mean": float(np.mean(np.concatenate([r["seam"] for r in res.values()])))}
    report["bar"] = {"value": report["mean_region_style_acc"], "bar": f">= {args.min_region_acc}",
                     "met": report["mean_region_style_acc"] >= args.min_region_acc}
    n_mask = len(masks)
    report["acc_by_mask"] = {name: float(np.mean([(r["pred"][j::n_mask] == STYLES.index(s)).mean()
                                                  for s, r in res.items()])) for j, name in enumerate(names)}
    # diagnostics outside the bar: how accuracy grows with the region (left half, whole image)
    half = np.zeros((size, size), np.float32)
    half[:, : size // 2] = 1
    big = np.stack([half, np.ones((size, size), np.float32)])
    diag = region_styles(pipe, clf, neutral, big, args.subjects, STYLES, seeds[: len(neutral) * 2], **kw)
    for j, name in enumerate(["left half", "whole image"]):
        report["acc_by_mask"][name] = float(np.mean([(r["pred"][j::2] == STYLES.index(s)).mean()
                                                     for s, r in diag.items()]))
    # the classifier's own limit on each region: true renders pasted in (no model)
    report["ceiling_by_mask"] = dict(zip(names, classifier_ceiling(clf, masks, args.subjects, args.seed)))
    write_json(os.path.join(args.out, "inpaint_quality.json"), report)
    image_grid([[res[s]["pasted"][j] for j in range(len(masks))] for s in STYLES],
               os.path.join(args.out, "inpaint_samples.png"), row_labels=STYLES, col_labels=names,
               captions=[[STYLES[res[s]["pred"][j]].split()[-1] for j in range(len(masks))] for s in STYLES],
               title=f"{os.path.basename(args.model)}: each style inpainted into a photo (caption: classifier)")
    print({s.split()[-1]: round(v, 3) for s, v in acc.items()})
    print("by mask:", {k: round(v, 2) for k, v in report["acc_by_mask"].items()})
    print("classifier ceiling by mask (true renders pasted in):",
          {k: round(v, 2) for k, v in report["ceiling_by_mask"].items()})
    print(f"{'MET ' if report['bar']['met'] else 'MISS'} region style accuracy {report['mean_region_style_acc']:.3f} "
          f"(min {report['min_region_style_acc']:.3f}, held-out masks {report['heldout_mask_acc']:.3f}; "
          f"bar {report['bar']['bar']}); raw outside PSNR {report['raw_outside_psnr_median']:.1f} dB; "
          f"wrote {args.out}/inpaint_quality.json and inpaint_samples.png")
    return 0 if report["bar"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
