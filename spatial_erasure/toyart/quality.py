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
import torch

from ..models import TOY_CLASSIFIER, TOY_MODEL, describe, load_pipeline
from ..reports import image_grid, write_json
from ..sampling import TOY_GUIDANCE, TOY_STEPS, generate
from .classifier import evaluate, load_classifier, predict, to_tensor
from .world import FAMOUS_WORKS, STYLES, SUBJECTS, WORK_TEMPLATES_HELDOUT, caption_for, render_batch

BARS = {"classifier_style_acc": 0.98, "classifier_subject_acc": 0.98, "classifier_cell_style_acc": 0.95,
        "vae_roundtrip_style_acc": 0.97, "min_generated_style_acc": 0.90, "generated_subject_acc": 0.80}


@torch.no_grad()
def vae_roundtrip(vae, images, batch=128):
    """Encode and decode uint8 images through the VAE (latent mean); returns uint8 images."""
    out = []
    for i in range(0, len(images), batch):
        x = to_tensor(images[i:i + batch]).to(vae.device, vae.dtype)
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        out.append(((rec.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


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
    rng = np.random.default_rng(args.seed)
    jobs = [(s, SUBJECTS[k % len(SUBJECTS)]) for s in STYLES for k in range(args.per_style)]
    prompts = [caption_for(s, u, rng, heldout=True) for s, u in jobs]
    works = [(w, a, u) for w, (a, u) in FAMOUS_WORKS.items() for _ in range(4)]
    prompts += [WORK_TEMPLATES_HELDOUT[k % 2].format(work=w, artist=a) for k, (w, a, u) in enumerate(works)]
    seeds = list(range(args.seed, args.seed + len(prompts)))
    gen = generate(pipe, prompts, seeds, args.num_inference_steps, args.guidance_scale, desc="generating")
    ps, pu, _ = predict(clf, to_tensor(gen))
    style_pred, subj_pred = ps.argmax(1).numpy(), pu.argmax(1).numpy()
    n = len(jobs)
    true_style = np.array([STYLES.index(s) for s, _ in jobs])
    true_subj = np.array([SUBJECTS.index(u) for _, u in jobs])
    per_style = {s: float((style_pred[:n][true_style == i] == i).mean()) for i, s in enumerate(STYLES)}
    report["generated_style_acc"] = per_style
    report["min_generated_style_acc"] = min(per_style.values())
    report["generated_subject_acc"] = float((subj_pred[:n] == true_subj).mean())
    report["famous_work_style_acc"] = float(np.mean([style_pred[n + k] == STYLES.index(a)
                                                     for k, (w, a, u) in enumerate(works)]))
    report["confusions"] = {s: {STYLES[j]: int(c) for j, c in enumerate(np.bincount(
        style_pred[:n][true_style == i], minlength=len(STYLES))) if c and j != i} for i, s in enumerate(STYLES)}
    report["examples"] = [{"prompt": p, "seed": s} for p, s in zip(prompts[:n:args.per_style], seeds[::args.per_style])]
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
    print("per style:", {s.split()[-1]: round(v, 2) for s, v in per_style.items()})
    print(f"famous works (held-out phrasings): {report['famous_work_style_acc']:.3f}; "
          f"wrote {args.out}/quality.json and samples.png in {report['seconds']} s")
    return 0 if report["all_bars_met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
