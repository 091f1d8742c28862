r"""The 48-test concept-impact assessment: is the target gone, and did everything else survive?

    python evaluation/concept_impact.py --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        evaluation/concept_impact.py --erasure FILE --device cuda    # 2 GPUs; no CUDA, no --device: 2 CPU processes

Five categories, one prompt CSV each in prompts/ (toy_*.csv for the toy world, the others for real
SD): target concept (8 tests), other artists (10), art styles (10), general objects (10), nature
scenes (10). Each test is a prompt drawn with fixed seeds by the base model and by the erased one.
Per test: the concept score (probability of the target, from the toy classifier or CLIP zero-shot),
the judge's style and subject, and how similar the base and erased images are (toy: pixel PSNR
and classifier-feature cosine distance; real SD: also LPIPS when the `lpips` package and its
weights are available). Per category, in UnlearnCanvas's terms:
- target: UA, the share of images no longer recognised as the target (pass: >= --min_ua);
- other artists, art styles: IRA, the share still recognised as their own style (>= --min_ira);
- objects, nature: CRA, the share whose subject is still recognised (>= --min_cra).
Writes report.md (tables, a thumbnail grid per category), concept_impact.json and summary.png;
exits 1 if a category fails. Images are cached: a rerun only generates what is missing. Under
`accelerate launch` the images are split between the processes, each on its own GPU with --device
cuda (spatial_erasure.distributed), and the main process alone writes.
"""
import os
import sys

import numpy as np

from spatial_erasure import cli
from spatial_erasure.distributed import process_device, process_state
from spatial_erasure.erasure_file import latest_erasure, read_erasure, recorded_base
from spatial_erasure.evaluation.concept_impact import assess, load_tests
from spatial_erasure.evaluation.metrics import make_judge
from spatial_erasure.models import describe, load_pipeline
from spatial_erasure.reports import atomic_write_text, image_grid, markdown_table, save_figure, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.worlds import world_of


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasure", default=None, help="erasure .safetensors file (default: the newest in models/ for --concept)")
    a("--concept", default="Vincent van Gogh", help="the erased concept")
    a("--prompts_dir", default="prompts", help="folder of the five CSVs")
    a("--images_per_test", type=int, default=2, help="seeds per test, from its evaluation_seed")
    a("--clip_model", default="openai/clip-vit-large-patch14", help="CLIP for real SD")
    a("--min_ua", type=float, default=0.85, help="pass: target category UA")
    a("--min_ira", type=float, default=0.80, help="pass: other artists and art styles")
    a("--min_cra", type=float, default=0.80, help="pass: objects and nature subjects")
    cli.add_common_args(p, None, "output folder (default: results/concept_impact/<erasure file stem>)", model=None,
                        model_help="base pipeline (default: the one the erasure file was trained on)", steps=None,
                        guidance=None)
    return p.parse_args(argv)


def summary_figure(summary, path, title):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    x = np.arange(len(summary))
    ax.bar(x - 0.2, [s["base"] for s in summary], 0.4, label="base", color="0.6")
    ax.bar(x + 0.2, [s["erased"] for s in summary], 0.4, label="erased", color="C3")
    for i, s in enumerate(summary):
        ax.plot([i - 0.45, i + 0.45], [s["threshold"]] * 2, color="k", lw=1, ls="--")
    ax.set_xticks(x, [f"{s['category']}\n{s['metric']}" for s in summary], fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("UA / retain accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    save_figure(fig, path)


@cli.reports_errors
def main(args):
    erasure = args.erasure or latest_erasure(args.concept)
    if erasure is None:
        cli.fail(f"no erasure file for {args.concept!r} in models/; train one (original_esd/esd_sd.py) or pass "
                 "--erasure FILE")
    meta = read_erasure(erasure)[1]
    pipe = load_pipeline(args.base_model or recorded_base(meta), device=process_device(args.device))
    world = world_of(pipe)
    tests = load_tests(args.prompts_dir, world)
    stem = os.path.basename(erasure).removesuffix(".safetensors")
    out = args.output or os.path.join("results", "concept_impact", stem)
    steps, guidance = sampling_defaults(world, args.num_inference_steps, args.guidance_scale)
    styles = [r["expected_style"] for _, _, _, rows in tests for r in rows if r.get("expected_style")]
    subjects = [r["expected_subject"] for _, _, _, rows in tests for r in rows if r.get("expected_subject")]
    judge = make_judge(pipe, args.concept, args.clip_model, styles=styles, subjects=subjects)
    state = process_state()
    state.print(f"{describe(pipe)}\nerasure: {erasure}; judge: {judge.name}; "
                f"{sum(len(r) for *_, r in tests)} tests x {args.images_per_test} seeds")
    res = assess(pipe, judge, tests, erasure, os.path.join(out, "images"), args.concept, args.images_per_test,
                 steps, guidance, {"UA": args.min_ua, "IRA": args.min_ira, "CRA": args.min_cra}, world=world)
    if not state.is_main_process:     # every process holds every image and verdict; the main one writes
        return 0
    rows, summary = res["rows"], res["summary"]
    for category, metric, by, _ in tests:
        first = [x["first_image"] for x in rows if x["category"] == category]
        image_grid([[res["base"][i] for i in first], [res["after"][i] for i in first]],
                   os.path.join(out, f"{category.replace(' ', '_')}.png"), row_labels=["base", "erased"],
                   col_labels=[str(x["case"]) for x in rows if x["category"] == category],
                   captions=[[res["labels"][by][w][i].split()[-1] for i in first] for w in (0, 1)],
                   title=f"{category}: first seed of each test (caption: judge's {by})")

    report = {"erasure": erasure, "concept": args.concept, "method": meta.get("method"), "base_model": describe(pipe),
              "judge": judge.name, "num_inference_steps": steps, "guidance_scale": guidance,
              "images_per_test": args.images_per_test, "tests": len(rows), "summary": summary, "rows": rows,
              "retain_frechet_distance": res["retain_fd"],
              "all_pass": all(s["pass"] for s in summary)}
    write_json(os.path.join(out, "concept_impact.json"), report)
    summary_figure(summary, os.path.join(out, "summary.png"), f"{stem}: base vs erased (dashed: pass threshold)")
    cols = ["category", "metric", "tests", "base", "erased", "threshold", "pass", "concept_score_base",
            "concept_score_erased", "psnr", "feature_distance"]
    md = [f"# Concept impact: {stem}\n", f"Erasure `{erasure}` ({meta.get('method')}, concept {args.concept!r}) on "
          f"{describe(pipe)}; judge: {judge.name}; {len(rows)} tests x {args.images_per_test} seeds, {steps} steps, "
          f"guidance {guidance}. UA = share of target images not recognised as the target; IRA/CRA = share of other "
          "prompts still recognised (style / subject). PSNR and feature distance: base vs erased image, same seed.\n",
          markdown_table(summary, cols), "![summary](summary.png)\n"]
    for category, *_ in tests:
        md += [f"## {category}\n", f"![{category}]({category.replace(' ', '_')}.png)\n",
               markdown_table([x for x in rows if x["category"] == category],
                              ["case", "prompt", "expected", "base_score", "erased_score", "base_label",
                               "erased_label", "psnr", "feature_distance", "lpips"])]
    atomic_write_text(os.path.join(out, "report.md"), "\n".join(md))
    print(markdown_table(summary, cols[:7]))
    print(f"{'all categories pass' if report['all_pass'] else 'some categories FAIL'}; wrote {out}/report.md, "
          "concept_impact.json, summary.png")
    return 0 if report["all_pass"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
