r"""Spatial evaluation: does an erasure stop the concept from being painted inside a mask, and what
happens outside it?

    python evaluation/spatial_evaluation.py --erasures models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors \
        models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors
    python evaluation/spatial_evaluation.py --base_model models/toyart-sd-inpainting --erasures FILE ...
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        evaluation/spatial_evaluation.py --erasures FILE ...      # 2 CPU processes, the same numbers as one

Neutral images (held-out photo phrasings, fixed seeds) are inpainted in every grid mask and in
held-out non-grid masks (rectangles at random positions, a circle, a free-form stroke) with the
target prompt and with other artists' prompts, by the base model and by each erased model. Per
model and mask: the share of regions the bundled classifier calls the target style (bounding box of
the mask, resized), the retain rate of other artists relative to the base model; outside the mask,
PSNR and max pixel difference of the raw pipeline output (before paste-back: what the model itself
preserves) and the seam at the mask border after paste-back. Writes spatial.json, spatial.md and
spatial.png; exits 1 when a bar is missed. Under `accelerate launch` the images are split between
the processes (spatial_erasure.distributed); the main process alone reports and writes.
"""
import os
import sys
from contextlib import nullcontext

import numpy as np

from spatial_erasure import cli
from spatial_erasure.distributed import process_device, process_state
from spatial_erasure.erasure_file import erased, read_erasure
from spatial_erasure.evaluation.bars import all_met, bar, print_bars
from spatial_erasure.evaluation.metrics import frechet_distance
from spatial_erasure.evaluation.regions import evaluation_masks, neutral_images, region_styles, region_twin
from spatial_erasure.evaluation.substitutes import colour_shift, paired_distance, style_shares
from spatial_erasure.models import TOY_CLASSIFIER, TOY_MODEL, describe, load_pipeline
from spatial_erasure.reports import atomic_write_text, image_grid, markdown_table, write_json
from spatial_erasure.sampling import inpaint
from spatial_erasure.toyart.classifier import load_classifier, region_features, region_style, to_tensor
from spatial_erasure.toyart.world import ARTISTS, STYLES, SUBJECTS


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasures", nargs="*", default=[], help="erasure .safetensors files to compare with the base model")
    a("--source_model", default=TOY_MODEL, help="text-to-image model of the neutral images (default: the bundled "
                                                "toy model, models/toyart-sd)")
    a("--target", default="Vincent van Gogh", choices=ARTISTS, help="the erased artist")
    a("--others", nargs="*", default=["Claude Monet", "Pablo Picasso", "Andy Warhol"], choices=ARTISTS,
      help="other artists inpainted the same way (retain)")
    a("--subjects", nargs="*", default=["house", "boat", "tree", "flower"], choices=SUBJECTS,
      help="one neutral image per subject")
    a("--max_target_rate", type=float, default=0.10, help="bar, erased models: target inside the held-out masks")
    a("--min_base_rate", type=float, default=0.80, help="bar, base model: target inside the mask")
    a("--min_retain_ratio", type=float, default=0.90, help="bar: other artists' rate, erased / base")
    a("--max_twin_distance", type=float, default=0.35, help="bar: paired twin distance inside the mask (pixel RMSE "
      "from the base model inpainting the neutral twin, same image, mask and seed, over the base model's own)")
    a("--max_fd_ratio", type=float, default=2.0, help="bar: Frechet distance inside the mask from the base twins, "
      "over the base model's seed spread")
    cli.add_common_args(p, "results/spatial", "output folder", model_help="toy pipeline folder, 4- or 9-channel",
                        seed=7000)
    return p.parse_args(argv)


@cli.reports_errors
def main(args):
    for f in args.erasures:
        read_erasure(f)                       # fail early, in one line, on a bad file
    device = process_device(args.device)
    clf = load_classifier(TOY_CLASSIFIER)
    pipe = load_pipeline(args.base_model, task="inpaint", device=device)
    state = process_state()
    state.print(describe(pipe))
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    kw = dict(num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale)
    neutral = neutral_images(args.source_model, args.subjects, args.seed, device=device, **kw)
    masks, names, kinds = evaluation_masks(size, args.seed)
    seeds = [args.seed + 100 + i for i in range(len(neutral) * len(masks))]
    artists = [args.target] + [a for a in args.others if a != args.target]
    models = {"base": None, **{os.path.basename(f).removesuffix(".safetensors"): f for f in args.erasures}}
    results = {}
    for label, f in models.items():
        with erased(pipe, f) if f else nullcontext():
            results[label] = region_styles(pipe, clf, neutral, masks, args.subjects, artists, seeds, **kw)
    # what each model paints instead of the target in the mask: against the base model inpainting the
    # neutral twins with the same seeds, and with other seeds (the base model's own spread)
    n_mask = len(masks)
    mk, sources = np.tile(masks, (len(neutral), 1, 1)) > 0.5, np.repeat(neutral, n_mask, 0)
    twins = [region_twin(s) for s in args.subjects for _ in range(n_mask)]
    twin_a = inpaint(pipe, sources, mk, twins, seeds, desc="base: neutral twins", **kw)[1]
    twin_b = inpaint(pipe, sources, mk, twins, [s + 100_000 for s in seeds], desc="base: twins, other seeds", **kw)[1]
    feats = lambda images: region_features(clf, to_tensor(images), mk)  # noqa: E731
    f_a, spread = feats(twin_a), frechet_distance(feats(twin_a), feats(twin_b))
    fd = {label: frechet_distance(feats(r[args.target]["pasted"]), f_a) for label, r in results.items()}
    held = np.tile(np.array(kinds) == "held-out", len(neutral))           # the cases of held-out masks
    base_target = results["base"][args.target]["pasted"]
    instead = {label: {**colour_shift(r[args.target]["pasted"], twin_a, twin_b, region=mk),
                       **paired_distance(r[args.target]["pasted"], twin_a, base_target, region=mk),
                       "twin_distance_heldout_masks": paired_distance(r[args.target]["pasted"][held], twin_a[held],
                                                                      base_target[held], region=mk[held])[
                                                                          "twin_distance"],
                       "fd": fd[label], "fd_base_seeds": spread, "fd_ratio": fd[label] / spread if spread > 0 else None,
                       "styles": style_shares([STYLES[i] for i in r[args.target]["pred"]])}
               for label, r in results.items()}
    twin_styles = region_style(clf, to_tensor(twin_a), mk)
    instead["base on the twins"] = {**colour_shift(twin_a, twin_a, twin_b, region=mk), "twin_distance": 0.0, "fd": 0.0,
                                    "fd_base_seeds": spread, "fd_ratio": 0.0,
                                    "styles": style_shares([STYLES[i] for i in twin_styles])}
    if not state.is_main_process:     # every process holds every image and verdict; the main one reports
        return 0

    per_mask = lambda r, a: [(r[a]["pred"].reshape(-1, n_mask)[:, j] == STYLES.index(a)).mean() for j in range(n_mask)]  # noqa: E731
    rate = lambda r, a, rows=slice(None): float((r[a]["pred"][rows] == STYLES.index(a)).mean())  # noqa: E731
    summary, bars = [], {}
    for label, r in results.items():
        row = {"model": label, "target_rate": rate(r, args.target),
               "target_rate_heldout_masks": rate(r, args.target, held),
               "twin_distance": instead[label]["twin_distance"],
               "twin_distance_heldout_masks": instead[label]["twin_distance_heldout_masks"],
               "fd_ratio": instead[label]["fd_ratio"]}
        row.update({f"{a} rate": rate(r, a) for a in artists[1:]})
        for a in artists[1:]:             # retain ratio only where the base model paints the artist at all
            base_rate = summary[0][f"{a} rate"] if summary else row[f"{a} rate"]     # base is the first row
            row[f"{a} ratio"] = row[f"{a} rate"] / base_rate if base_rate >= args.min_base_rate / 4 else None
        row["raw_psnr_outside"] = float(np.median(np.concatenate([r[a]["raw_psnr"] for a in artists])))
        row["raw_maxdiff_outside"] = int(max(r[a]["raw_maxdiff"].max() for a in artists))
        row["pasted_maxdiff_outside"] = int(max(r[a]["pasted_maxdiff"].max() for a in artists))
        row["seam"] = float(np.mean(np.concatenate([r[a]["seam"] for a in artists])))
        summary.append(row)
        if label == "base":
            bars["base target_rate"] = bar(row["target_rate"], ">=", args.min_base_rate)
        else:
            ratios = [row[f"{a} ratio"] for a in artists[1:] if row[f"{a} ratio"] is not None]
            bars[f"{label} target_rate held-out masks"] = bar(row["target_rate_heldout_masks"], "<=",
                                                              args.max_target_rate)
            if ratios:
                bars[f"{label} min retain ratio"] = bar(min(ratios), ">=", args.min_retain_ratio)
            bars[f"{label} twin_distance held-out masks"] = bar(row["twin_distance_heldout_masks"], "<=",
                                                                args.max_twin_distance)
            bars[f"{label} fd_ratio"] = bar(row["fd_ratio"], "<=", args.max_fd_ratio)
        bars[f"{label} outside kept"] = bar(row["pasted_maxdiff_outside"], "==", 0)
    mask_rows = [{"mask": nm, "kind": kd, **{lbl: float(per_mask(r, args.target)[j]) for lbl, r in results.items()}}
                 for j, (nm, kd) in enumerate(zip(names, kinds))]

    os.makedirs(args.output, exist_ok=True)
    report = {"args": vars(args), "model": describe(pipe), "cases_per_model": len(seeds), "masks": names,
              "summary": summary, "per_mask_target_rate": mask_rows, "instead_in_mask": instead,
              "bars": bars, "all_bars_met": all_met(bars)}
    write_json(os.path.join(args.output, "spatial.json"), report)
    cols = ["model", "target_rate", "target_rate_heldout_masks", "twin_distance", "twin_distance_heldout_masks",
            "fd_ratio"] + [f"{a} ratio" for a in artists[1:]] + \
        ["raw_psnr_outside", "raw_maxdiff_outside", "pasted_maxdiff_outside", "seam"]
    md = (f"# Spatial evaluation\n\n{describe(pipe)}\n\n{len(seeds)} cases per model and prompt "
          f"({len(neutral)} neutral images x {n_mask} masks).\n\n" + markdown_table(summary, cols) +
          "\n## Rate inside the mask, by prompted artist\n\n" +
          markdown_table(summary, ["model", "target_rate"] + [f"{a} rate" for a in artists[1:]]) +
          "\n## Target rate inside each mask\n\n" + markdown_table(mask_rows, ["mask", "kind"] + list(results)) +
          "\n## What each model paints in the mask instead of the target\n\nThe model inpainting the target's "
          "prompt against the base model inpainting its neutral twin (same seeds), inside the mask: twin_distance, "
          "the pixel RMSE from the base twin over the base model's own (0 = paints the twin, 1 = no erasure); "
          "colour_shift, "
          "the distance of mean RGB (0-255) from the base twins, beside the base model's own seed spread; contrast: "
          "standard deviation of luminance; fd: Frechet distance of the region classifier's features from the "
          "base twins' regions, fd_ratio: over the base model's own seed spread (fd_base_seeds); styles: the region "
          "classifier's three most frequent styles.\n\n" +
          markdown_table([{"model": k, **{c: v.get(c) for c in ("twin_distance", "fd", "fd_ratio", "colour_shift",
                                                               "colour_shift_base_seeds", "contrast",
                                                               "contrast_base_twins")},
                           "styles": ", ".join(f"{s} {x:.2f}" for s, x in list(v["styles"].items())[:3])}
                          for k, v in instead.items()],
                         ["model", "twin_distance", "fd", "fd_ratio", "colour_shift", "colour_shift_base_seeds",
                          "contrast",
                          "contrast_base_twins", "styles"]))
    atomic_write_text(os.path.join(args.output, "spatial.md"), md)
    # figure: rows = masks (first neutral image), columns = source + each model's target inpainting
    rows = [[neutral[0]] + [r[args.target]["pasted"][j] for r in results.values()] for j in range(n_mask)]
    image_grid(rows, os.path.join(args.output, "spatial.png"), row_labels=names,
               col_labels=["source"] + list(results), cell=1.0,
               captions=[[""] + [STYLES[r[args.target]["pred"][j]].split()[-1] for r in results.values()]
                         for j in range(n_mask)],
               title=f"{args.target!r} inpainted in each mask (caption: classifier's style of the region)")
    print(md)
    print_bars(bars)
    print(f"wrote {args.output}/spatial.json, spatial.md, spatial.png")
    return 0 if report["all_bars_met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
