"""Base vs erased, side by side: one prompt, N seeds, a concept score per image.

    python evaluation/simple_vangogh_evaluation.py --prompt "a painting by Vincent van Gogh" --num_tests 5
    python evaluation/simple_vangogh_evaluation.py --prompt "a painting by Vincent van Gogh" --num_tests 5 \\
        --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors

For seeds seed..seed+N-1 the base model and the erased model (base + erasure file) draw the prompt;
each image gets a concept score: the probability of the target style from the bundled toy
classifier (toy model), or from CLIP zero-shot among the target and other artists and styles
(real SD, `--clip_model`). Writes a labelled grid (row 1 base, row 2 erased), a JSON and prints a
table. With no --erasure, the newest erasure file in models/ for --concept is used and named.
Images are cached in OUTPUT/images: a rerun only generates what is missing.
"""
import os
import sys

import numpy as np

from spatial_erasure import cli
from spatial_erasure.distributed import process_device
from spatial_erasure.erasure_file import erased, latest_erasure, read_erasure, recorded_base
from spatial_erasure.evaluation.metrics import cached_generate, make_judge
from spatial_erasure.models import describe, load_pipeline
from spatial_erasure.reports import image_grid, markdown_table, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.worlds import world_of


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--prompt", default="a painting by Vincent van Gogh", help="the prompt to compare")
    a("--num_tests", type=int, default=5, help="seeds, one image each per model")
    a("--concept", default="Vincent van Gogh", help="the erased concept: target of the score")
    a("--erasure", default=None, help="erasure .safetensors file (default: the newest in models/ for --concept)")
    a("--clip_model", default="openai/clip-vit-large-patch14", help="CLIP for real-SD scores")
    cli.add_common_args(p, None, "output folder (default: results/simple_eval/<erasure file stem>)", model=None,
                        model_help="base pipeline (default: the one the erasure file was trained on)", seed=0,
                        steps=None, guidance=None)
    return p.parse_args(argv)


@cli.reports_errors
def main(args):
    cli.require_positive(vars(args), "num_tests")
    erasure = args.erasure or latest_erasure(args.concept)
    if erasure is None:
        cli.fail(f"no erasure file for {args.concept!r} in models/; train one (inpainting_erasure/"
                 "scaled_grid_erasure.py or original_esd/esd_sd.py) or pass --erasure FILE")
    meta = read_erasure(erasure)[1]
    pipe = load_pipeline(args.base_model or recorded_base(meta), device=process_device(args.device))
    stem = os.path.basename(erasure).removesuffix(".safetensors")
    out = args.output or os.path.join("results", "simple_eval", stem)
    steps, guidance = sampling_defaults(world_of(pipe), args.num_inference_steps, args.guidance_scale)
    judge = make_judge(pipe, args.concept, args.clip_model)
    if args.concept not in judge.style_names:
        cli.fail(f"--concept {args.concept!r} is not a style the {judge.name} knows; choose one of "
                 f"{', '.join(judge.style_names)}")
    print(f"{describe(pipe)}\nerasure: {erasure} ({meta.get('method')}, concept {meta.get('concept')!r}); "
          f"judge: {judge.name}")
    seeds = list(range(args.seed, args.seed + args.num_tests))
    prompts = [args.prompt] * len(seeds)
    kw = dict(num_inference_steps=steps, guidance_scale=guidance)
    base = cached_generate(pipe, prompts, seeds, os.path.join(out, "images"), "base", desc="base", **kw)
    with erased(pipe, erasure):
        after = cached_generate(pipe, prompts, seeds, os.path.join(out, "images"), "erased", desc="erased", **kw)
    vb, ve = judge(base), judge(after)
    sb, se = vb.score(args.concept), ve.score(args.concept)
    rows = [{"seed": s, "base_score": float(b), "erased_score": float(e), "base_style": x, "erased_style": y}
            for s, b, e, x, y in zip(seeds, sb, se, vb.styles(), ve.styles())]
    report = {"prompt": args.prompt, "concept": args.concept, "erasure": erasure, "erasure_method": meta.get("method"),
              "base_model": describe(pipe), "judge": judge.name, "num_inference_steps": steps,
              "guidance_scale": guidance, "rows": rows, "mean_base_score": float(np.mean(sb)),
              "mean_erased_score": float(np.mean(se)),
              "base_recognised": float(np.mean([s == args.concept for s in vb.styles()])),
              "erased_recognised": float(np.mean([s == args.concept for s in ve.styles()]))}
    write_json(os.path.join(out, "evaluation.json"), report)
    short = lambda s: s.split()[-1]  # noqa: E731
    image_grid([list(base), list(after)], os.path.join(out, "comparison.png"), row_labels=["base", "erased"],
               col_labels=[f"seed {s}" for s in seeds],
               captions=[[f"{b:.2f} {short(x)}" for b, x in zip(sb, vb.styles())],
                         [f"{e:.2f} {short(y)}" for e, y in zip(se, ve.styles())]],
               title=f"{args.prompt!r}: base vs {stem} (caption: P({short(args.concept)}), {judge.name}'s style)")
    print(markdown_table(rows, ["seed", "base_score", "erased_score", "base_style", "erased_style"]))
    print(f"mean {args.concept} score {report['mean_base_score']:.3f} -> {report['mean_erased_score']:.3f}; "
          f"recognised {report['base_recognised']:.0%} -> {report['erased_recognised']:.0%}; "
          f"wrote {out}/comparison.png and evaluation.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
