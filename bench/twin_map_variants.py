"""Closed-form twin maps (spatial_erasure.twin_map) with different sets of prompts to keep, written as
erasure files for evaluation/twin_evaluation.py: which keep set paints closest to the twin?

    python bench/twin_map_variants.py --concept "Vincent van Gogh" --output results/twin_map/Vincent_van_Gogh
    python evaluation/gauge.py results/twin_map/Vincent_van_Gogh/*.safetensors

Each variant solves one map M of the text embedding for the concept's 30 toy variations (templates x
subjects, with their twins) and sets every attn2.to_k / to_v to W0 M (no UNet call, under a second).
"-v" variants set to_v alone (the keys keep attending as before). The keep sets: "anchors" is what
`esd_sd.py --twin_map` keeps ("" and --preserve 200 anchors); "wide" adds the other artists and generic
styles over every subject (prompts.retain_prompts) and the photo and painting templates over every
subject (what the base model paints with no artist named).
"""
import argparse
import os

from spatial_erasure.anchors import anchor_prompts
from spatial_erasure.erasure_file import file_name_part, record_base, save_erasure
from spatial_erasure.models import TOY_MODEL, fingerprint, load_pipeline
from spatial_erasure.prompts import concept_variations, retain_prompts
from spatial_erasure.toyart.world import PAINTING_TEMPLATES, PHOTO_TEMPLATES, SUBJECTS
from spatial_erasure.twin_map import residual, solve_twin_map
from spatial_erasure.worlds import TOY

# name: (keep set, keep weight, weight of "", the projections set to W0 M)
KV, V = ("attn2.to_k.weight", "attn2.to_v.weight"), ("attn2.to_v.weight",)
VARIANTS = {"anchors-k1": ("anchors", 1.0, 10.0, KV), "wide-k1": ("wide", 1.0, 10.0, KV),
            "wide-k3": ("wide", 3.0, 10.0, KV), "wide-k10": ("wide", 10.0, 10.0, KV),
            "anchors-k3": ("anchors", 3.0, 10.0, KV), "anchors-k1-v": ("anchors", 1.0, 10.0, V),
            "wide-k3-v": ("wide", 3.0, 10.0, V), "wide-k10-v": ("wide", 10.0, 10.0, V)}


def keep_set(kind, concept):
    keep = [""] + anchor_prompts(200, 0, [concept])
    if kind == "wide":
        keep += retain_prompts(concept, TOY)
        keep += [t.format(subject=s) for t in PHOTO_TEMPLATES + PAINTING_TEMPLATES for s in SUBJECTS]
    return keep


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concept", default="Vincent van Gogh")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--variations", type=int, default=30)
    p.add_argument("--output", help="folder (default: results/twin_map/<concept>)")
    args = p.parse_args()
    out = args.output or os.path.join("results", "twin_map", file_name_part(args.concept))
    pipe = load_pipeline(TOY_MODEL)
    rows = [(args.concept, "")] + [(v["prompt"], v["neutral"]) for v in concept_variations(args.concept,
                                                                                          args.variations, TOY)]
    own = dict(pipe.unet.named_parameters())
    meta = {"base_model": record_base(TOY_MODEL), "base_fingerprint": fingerprint(pipe.unet), "method": "esd-x",
            "concept": args.concept, "erase_from": args.concept}
    for name in args.variants:
        kind, keep_weight, null_weight, projections = VARIANTS[name]
        names = [n for n in own if n.endswith(projections)]
        keep = keep_set(kind, args.concept)
        m = solve_twin_map(pipe, rows, keep, keep_weight=keep_weight, null_weight=null_weight)
        tensors = {n: own[n].detach().double() @ m for n in names}
        path, left = os.path.join(out, f"{name}.safetensors"), residual(pipe, rows, m)
        save_erasure(path, tensors, {**meta, "variant": name, "keep_prompts": len(keep),
                                     "twin_map_residual": round(left, 4)})
        print(f"{path}: keep {len(keep)} prompts, residual {left:.3f}")


if __name__ == "__main__":
    main()
