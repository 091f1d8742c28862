"""Does an erased model paint the neutral twin? Global generation on held-out phrasings, seed for seed.

    python evaluation/twin_evaluation.py --erasures models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors
    python evaluation/twin_evaluation.py --concept "Claude Monet" --erasures FILE [FILE ...] --kinds heldout synonyms

The goal of an erasure is the picture the base model draws for the same prompt without the concept.
For every held-out artist phrasing of the concept with its twin, the same prompt without the artist
(`spatial_erasure.phrasings.twin_pairs`: the toy world's two held-out phrasings and the unseen ones of
the collateral set, every subject; "a drawing of a house by Vincent van Gogh" -> "a drawing of a
house"), and `--seeds` seeds each: the base model on the prompt and on its twin, the base model on the
twin with other seeds (its own spread), and each erased model on the prompt. Per model:

- concept rate: images the judge (toy model: the bundled classifier; real SD: CLIP zero-shot,
  --clip_model) still assigns to the concept;
- twin distance: pixel RMSE from the base model's twin image, over the same for the base model's
  concept image (0 = paints the twin, 1 = no erasure);
- FD ratio: Frechet distance of the judge's features from the base twins, over the base model's
  own seed spread; subject ratio: subject kept over the twins'; style excess: the largest share a
  style takes beyond its share among the base twins (no "everything becomes Hokusai").

Two references set the scale: the base twins' own concept rate (on the toy model "a painting of a
house" is painted by a random artist, the concept included), and `base: twin + " ."`, the base model
on the twin with a void " ." appended, whose twin distance is how far a change of the prompt that
means nothing already moves the picture for the same seed.

Writes twin.json, twin.md and twin.png (columns: pairs; rows: base on the prompt, base on the twin,
each erased model) to --output; images are cached there, so a rerun only generates what is new.
Exits 1 when a bar is missed.
"""
import os
import sys

import numpy as np

from spatial_erasure import cli
from spatial_erasure.distributed import process_device, process_state
from spatial_erasure.erasure_file import erased, file_hash, file_name_part, names_by_stem, read_erasure, recorded_base
from spatial_erasure.evaluation.bars import all_met, bar, print_bars
from spatial_erasure.evaluation.metrics import cached_generate, make_judge
from spatial_erasure.evaluation.substitutes import paired_distance, substitutes
from spatial_erasure.models import describe, load_pipeline
from spatial_erasure.phrasings import HELD_OUT_KINDS, PAIR_KINDS, twin_pairs
from spatial_erasure.reports import atomic_write_text, image_grid, markdown_table, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.toyart.world import STYLES, SUBJECTS
from spatial_erasure.worlds import TOY, world_of

SEED = 9000                        # first image seed; the twins' other seeds are + 100_000
VOID = "base: twin + ' .'"         # the reference row: the base model on the twin with a void " ." appended
BARS = {"concept_rate": ("<=", 0.05), "twin_distance": ("<=", 0.4), "fd_ratio": ("<=", 2.0),
        "subject_ratio": (">=", 0.9), "style_excess": ("<=", 0.15)}


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasures", nargs="+", required=True, help="erasure .safetensors files")
    a("--concept", default="Vincent van Gogh", help="the erased artist (its name fills the phrasings)")
    a("--kinds", nargs="+", default=HELD_OUT_KINDS, choices=list(PAIR_KINDS), metavar="KIND",
      help=cli.choices_help(PAIR_KINDS))
    a("--seeds", type=int, default=1, help="seeds per (phrasing, subject) pair")
    for name, (op, value) in BARS.items():
        a(f"--{'max' if op == '<=' else 'min'}_{name}", type=float, default=value, help=f"bar: {name} {op}")
    a("--clip_model", default="openai/clip-vit-large-patch14", help="CLIP judge for real SD")
    cli.add_common_args(p, None, "output folder (default: results/twin/<concept>)", model=None,
                        model_help="base pipeline (default: the one the first erasure file was trained on)",
                        seed=SEED, seed_help="seed of the first image (image i: seed + i, the same for every model)",
                        steps=None, guidance=None)
    args = p.parse_args(argv)
    cli.require_positive(vars(args), "seeds")
    return args


def measure(judge, concept, images, base, twins, twins_b, pairs):
    """One model's numbers from its images of the pairs' prompts (all arrays aligned with `pairs`)."""
    v = judge(images)
    s = substitutes(v, judge(twins), judge(twins_b), [p.subject for p in pairs], images, twins, twins_b,
                    base_images=base, concept=concept)
    hit = np.array([x == concept for x in v.styles()])
    kinds = dict.fromkeys(p.kind for p in pairs)
    by_kind = {}
    for k in kinds:
        i = np.array([p.kind == k for p in pairs])
        by_kind[k] = {"concept_rate": float(hit[i].mean()),
                      "twin_distance": paired_distance(images[i], twins[i], base[i])["twin_distance"]}
    return {"concept_rate": float(hit.mean()), **{k: s[k] for k in (
        "twin_distance", "rmse_to_twin", "rmse_base_to_twin", "fd", "fd_base_seeds", "fd_ratio", "subject_kept",
        "subject_kept_base_twins", "subject_ratio", "style_excess", "top_excess_style", "styles",
        "base_twin_styles")}, "by_kind": by_kind, "style_of": v.styles()}


def figure(rows, labels, pairs, path, title, columns=8):
    """Columns: one pair per kind (then more), rows: the images of `rows` ({label: images})."""
    order = list(dict.fromkeys(p.kind for p in pairs))
    first = [next(i for i, p in enumerate(pairs) if p.kind == k) for k in order]
    pick = (first + [i for i in range(0, len(pairs), max(1, len(pairs) // columns)) if i not in first])[:columns]
    short = lambda s: s.split()[-1] if s else ""  # noqa: E731
    image_grid([[rows[r][i] for i in pick] for r in rows], path, row_labels=list(rows),
               col_labels=[pairs[i].prompt[:40] for i in pick],
               captions=[[short(labels[r][i]) if labels.get(r) else "" for i in pick] for r in rows], title=title)


def report_markdown(models, bars, args, report):
    cols = ["model", "concept_rate", "twin_distance", "fd_ratio", "subject_ratio", "style_excess",
            "top_excess_style", "styles"]
    fmt = lambda m: {**m, "styles": ", ".join(f"{s} {v:.2f}" for s, v in list(m["styles"].items())[:3])}  # noqa: E731
    kinds = list(next(iter(models.values()))["by_kind"])
    per_kind = [{"model": n, **{k: f"{m['by_kind'][k]['concept_rate']:.2f} / {m['by_kind'][k]['twin_distance']:.2f}"
                                for k in kinds}} for n, m in models.items()]
    lines = [f"# Does the erased model paint the twin? {args.concept}\n",
             f"{report['base_model']}; judge: {report['judge']}; {report['pairs']} pairs x {args.seeds} seed(s) "
             f"(seed {args.seed}), {report['num_inference_steps']} steps, guidance {report['guidance_scale']}.\n",
             "concept_rate: images still judged the concept; twin_distance: pixel RMSE from the base model's twin "
             "image (same seed) over the base model's own (0 = paints the twin, 1 = no erasure); fd_ratio: Frechet "
             "distance of the judge's features from the base twins over the base model's seed spread; "
             "subject_ratio: subject kept over the twins'; style_excess: the largest share a style takes beyond "
             "its share among the base twins.\n",
             markdown_table([fmt(m) for m in models.values()], cols),
             "\nBase twins paint: " + ", ".join(f"{s} {v:.2f}" for s, v in report["base_twin_styles"].items()) +
             f" (the concept itself: {report['base_twin_concept_rate']:.2f}). `{VOID}` is the base model on the twin "
             "with a void \" .\" appended: the distance a change of the prompt that means nothing already makes.\n",
             "## Per kind of phrasing: concept rate / twin distance\n", markdown_table(per_kind, ["model", *kinds]),
             "## Bars\n", markdown_table([{"bar": k, **v} for k, v in bars.items()], ["bar", "value", "bar", "met"]),
             "![pairs](twin.png)\n"]
    return "\n".join(lines)


@cli.reports_errors
def main(args):
    erasures = names_by_stem(args.erasures)
    metas = {name: read_erasure(path)[1] for name, path in erasures.items()}   # a bad file fails now, in one line
    pipe = load_pipeline(args.base_model or recorded_base(metas[next(iter(metas))]),
                         device=process_device(args.device))
    world = world_of(pipe)
    if world is TOY and args.concept not in STYLES:
        cli.fail(f"--concept {args.concept!r} is not a toy style; choose one of: {', '.join(STYLES)}")
    steps, guidance = sampling_defaults(world, args.num_inference_steps, args.guidance_scale)
    judge = make_judge(pipe, args.concept, args.clip_model, **({"styles": [s for s in STYLES if s != args.concept],
                                                                "subjects": SUBJECTS} if world is TOY else {}))
    out = args.output or os.path.join("results", "twin", file_name_part(args.concept))
    pairs = [p for p in twin_pairs(args.concept, args.seed, args.kinds) for _ in range(args.seeds)]
    seeds = [args.seed + i for i in range(len(pairs))]
    state = process_state()
    state.print(f"{describe(pipe)}\njudge: {judge.name}; {len(pairs)} pairs x {1 + len(erasures)} models")
    folder = os.path.join(out, "images")
    gen = lambda prompts, tag, s=seeds, desc=None: cached_generate(pipe, prompts, s, folder, tag, steps,  # noqa: E731
                                                                   guidance, desc=desc)
    base = gen([p.prompt for p in pairs], "base", desc="base: prompts")
    twins = gen([p.twin for p in pairs], "base", desc="base: twins")
    twins_b = gen([p.twin for p in pairs], "base", [s + 100_000 for s in seeds], desc="base: twins, other seeds")
    images = {"base": base, VOID: gen([p.twin + " ." for p in pairs], "base", desc="base: twins + ' .'")}
    for name, path in erasures.items():
        with erased(pipe, path):
            images[name] = gen([p.prompt for p in pairs], name, desc=f"{name}: prompts")
    if not state.is_main_process:     # every process holds every image; the main one writes
        return 0
    models = {name: measure(judge, args.concept, x, base, twins, twins_b, pairs) for name, x in images.items()}
    bars = {}
    for name in erasures:
        for key, (op, _) in BARS.items():
            value = models[name][key]
            if value is not None:
                bars[f"{name} {key}"] = bar(value, op, getattr(args, f"{'max' if op == '<=' else 'min'}_{key}"))
    report = {"concept": args.concept, "base_model": describe(pipe), "judge": judge.name,
              "num_inference_steps": steps, "guidance_scale": guidance, "pairs": len(pairs) // args.seeds,
              "kinds": {k: PAIR_KINDS[k] for k in args.kinds}, "base_twin_styles": models["base"]["base_twin_styles"],
              "base_twin_concept_rate": models["base"]["base_twin_styles"].get(args.concept, 0.0),
              "erasures": {name: {"path": erasures[name], "file_hash": file_hash(erasures[name]),
                                  **{k: m.get(k) for k in ("method", "concept")}} for name, m in metas.items()},
              "args": vars(args),
              "models": {n: {k: v for k, v in m.items() if k != "style_of"} for n, m in models.items()},
              "bars": bars, "all_bars_met": all_met(bars)}
    write_json(os.path.join(out, "twin.json"), report)
    rows = {"base: prompt": base, "base: twin": twins, **{n: images[n] for n in erasures}}
    labels = {"base: prompt": models["base"]["style_of"], "base: twin": judge(twins).styles(),
              **{n: models[n]["style_of"] for n in erasures}}
    figure(rows, labels, pairs, os.path.join(out, "twin.png"),
           f"{args.concept}: base on the prompt and on its twin, then each erased model (caption: judged style)")
    atomic_write_text(os.path.join(out, "twin.md"), report_markdown(models, bars, args, report))
    print(markdown_table([{"model": n, **m} for n, m in models.items()],
                         ["model", "concept_rate", "twin_distance", "fd_ratio", "subject_ratio", "style_excess",
                          "top_excess_style"]))
    print_bars(bars)
    print(f"wrote {out}/twin.json, twin.md, twin.png")
    return 0 if report["all_bars_met"] else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
