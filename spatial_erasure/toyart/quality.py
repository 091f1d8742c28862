"""Quality check of the bundled toy model, judged by the bundled classifier; prints every bar.

Bars (issue 2): classifier held-out style and subject accuracy >= 98%, grid-cell style >= 95%;
VAE round-trip style accuracy >= 97%; generated images from *held-out phrasings*: style accuracy
>= 90% for every artist and generic style, "photo" >= 90% for unstyled prompts, subject >= 80%.

    python -m spatial_erasure.toyart.quality --out results/toyart_quality
"""
import argparse
import os
import sys
import time

import numpy as np

from ..models import TOY_CLASSIFIER, TOY_MODEL, describe, load_pipeline
from ..reports import image_grid, write_json
from ..sampling import TOY_GUIDANCE, TOY_STEPS, generate
from .classifier import evaluate, load_classifier, predict, to_tensor
from .vae import roundtrip
from .world import FAMOUS_WORKS, STYLES, SUBJECTS, WORK_TEMPLATES_HELDOUT, caption_for, render_batch

BARS = {"classifier_style_acc": 0.98, "classifier_subject_acc": 0.98, "classifier_cell_style_acc": 0.95,
        "vae_roundtrip_style_acc": 0.97, "min_generated_style_acc": 0.90, "generated_subject_acc": 0.80}


def vae_roundtrip(vae, images):
    """Encode and decode uint8 images through the VAE (latent mean); returns uint8 images."""
    rec = roundtrip(vae, to_tensor(images))
    return ((rec + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def style_rates(pipe, clf, styles, per_style, seed, steps=TOY_STEPS, guidance=TOY_GUIDANCE, heldout=True):
    """Generate per_style images for each style (subjects cycled, held-out phrasings, fixed seeds) and
    judge them: share recognised as their own style, subject accuracy, confusions, and the images."""
    rng = np.random.default_rng(seed)
    jobs = [(s, SUBJECTS[k % len(SUBJECTS)]) for s in styles for k in range(per_style)]
    prompts = [caption_for(s, u, rng, heldout=heldout) for s, u in jobs]
    images = generate(pipe, prompts, range(seed, seed + len(jobs)), steps, guidance, desc="generating")
    ps, pu, _ = predict(clf, to_tensor(images))
    style_pred, subj_pred = ps.argmax(1).numpy(), pu.argmax(1).numpy()
    true_style = np.array([STYLES.index(s) for s, _ in jobs])
    true_subj = np.array([SUBJECTS.index(u) for _, u in jobs])
    rate = {s: float((style_pred[true_style == STYLES.index(s)] == STYLES.index(s)).mean()) for s in styles}
    confusions = {s: {STYLES[j]: int(c) for j, c in enumerate(np.bincount(
        style_pred[true_style == STYLES.index(s)], minlength=len(STYLES))) if c and j != STYLES.index(s)}
        for s in styles}
    subj_hit = subj_pred == true_subj
    return {"generated_style_acc": rate, "generated_subject_acc": float(subj_hit.mean()),
            "subject_acc_by_style": {s: float(subj_hit[true_style == STYLES.index(s)].mean()) for s in styles},
            "confusions": confusions, "prompts": prompts, "images": images, "jobs": jobs,
            "style_pred": style_pred, "subject_pred": subj_pred}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=TOY_MODEL, help="toy pipeline folder")
    p.add_argument("--classifier", default=TOY_CLASSIFIER, help="toy classifier folder")
    p.add_argument("--per_style", type=int, default=24, help="generated images per style (>= 16)")
    p.add_argument("--num_inference_steps", type=int, default=TOY_STEPS, help="sampling steps")
    p.add_argument("--guidance_scale", type=float, default=TOY_GUIDANCE, help="classifier-free guidance")
    p.add_argument("--seed", type=int, default=1234, help="first seed of the generated images")
    p.add_argument("--out", default="results/toyart_quality", help="folder for quality.json and samples.png")
    return p.parse_args(argv)


def main(args):
    t0 = time.time()
    clf = load_classifier(args.classifier)
    pipe = load_pipeline(args.model)
    print(describe(pipe))
    report = {"model": args.model, "args": vars(args)}

    cm = evaluate(clf)                                   # held-out procedural images
    report.update(classifier_style_acc=cm["style_acc"], classifier_subject_acc=cm["subject_acc"],
                  classifier_cell_style_acc=cm["cell_style_acc"])

    images, _, st, _ = render_batch(900, seed=20_000)
    ps, _, _ = predict(clf, to_tensor(vae_roundtrip(pipe.vae, images)))
    hit = ps.argmax(1).numpy() == st
    report["vae_roundtrip_style_acc"] = float(hit.mean())
    report["vae_roundtrip_per_style"] = {s: float(hit[st == i].mean()) for i, s in enumerate(STYLES)}

    # generated images: per style, subjects cycled, held-out phrasings only
    rates = style_rates(pipe, clf, STYLES, args.per_style, args.seed, args.num_inference_steps, args.guidance_scale)
    report.update({k: rates[k] for k in ("generated_style_acc", "generated_subject_acc", "confusions", "prompts")})
    report["min_generated_style_acc"] = min(rates["generated_style_acc"].values())
    gen, jobs, style_pred, subj_pred = rates["images"], rates["jobs"], rates["style_pred"], rates["subject_pred"]
    works = [(w, a) for w, (a, u) in FAMOUS_WORKS.items() for _ in range(4)]
    prompts = [WORK_TEMPLATES_HELDOUT[k % 2].format(work=w, artist=a) for k, (w, a) in enumerate(works)]
    wimg = generate(pipe, prompts, range(args.seed + 10_000, args.seed + 10_000 + len(prompts)),
                    args.num_inference_steps, args.guidance_scale)
    ws, _, _ = predict(clf, to_tensor(wimg))
    report["famous_work_style_acc"] = float(np.mean(ws.argmax(1).numpy() == [STYLES.index(a) for _, a in works]))
    report["bars"] = {k: {"value": report[k], "bar": v, "met": report[k] >= v} for k, v in BARS.items()}
    report["all_bars_met"] = all(b["met"] for b in report["bars"].values())
    report["seconds"] = round(time.time() - t0, 1)

    # grid: styles x subjects, the first image of each cell, labelled with the classifier's verdict
    rows, caps = [], []
    for i, s in enumerate(STYLES):
        row, cap = [], []
        for j, u in enumerate(SUBJECTS):
            k = next(k for k, (s2, u2) in enumerate(jobs) if s2 == s and u2 == u)
            row.append(gen[k])
            cap.append(f"{STYLES[style_pred[k]].split()[-1]} / {SUBJECTS[subj_pred[k]]}")
        rows.append(row)
        caps.append(cap)
    image_grid(rows, os.path.join(args.out, "samples.png"), row_labels=STYLES, col_labels=SUBJECTS, captions=caps,
               title=f"toy SD, held-out phrasings, {args.num_inference_steps} DDIM steps, guidance "
                     f"{args.guidance_scale} (caption: classifier's style / subject)")
    write_json(os.path.join(args.out, "quality.json"), report)
    for k, b in report["bars"].items():
        print(f"{'MET ' if b['met'] else 'MISS'} {k:28s} {b['value']:.3f} (bar {b['bar']})")
    print("per style:", {s.split()[-1]: round(v, 2) for s, v in rates["generated_style_acc"].items()})
    print(f"famous works (held-out phrasings): {report['famous_work_style_acc']:.3f}; "
          f"wrote {args.out}/quality.json and samples.png in {report['seconds']} s")
    return 0 if report["all_bars_met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
