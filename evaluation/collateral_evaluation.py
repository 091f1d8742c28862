"""Collateral damage of erasure files on phrasings no trainer used: per style and kind of rewording.

    python evaluation/collateral_evaluation.py            # base, the bundled ESD-x and grid files, toy model
    python evaluation/collateral_evaluation.py --erasures FILE [FILE ...] --concept "Vincent van Gogh" --per_style 8

The phrasings (spatial_erasure.phrasings, prompts/README.md) word every toy style and subject in
ways no trainer and no other evaluation uses: reordered, synonyms, out-of-vocabulary words,
punctuation and case, no style word at all, long prompts. Each is drawn with a fixed seed by the base
model and by every erasure file (the same seed for every model), and judged (toy model: the bundled
classifier; real SD: CLIP zero-shot, --clip_model). Per model, style and kind: the share recognised
as the style asked for and the share whose subject is kept; per kind: the target's rate (--concept
still recognised; UA = 1 - rate) and every other style's; for the no-style prompts, the style the
model paints by default and how often it is the base model's for the same seed. Writes
collateral.json, collateral.md and collateral.png (heatmaps of style x kind per model: style, subject) to
--output; images are cached in its images/ folder, so a rerun only generates what is missing.
Under `accelerate launch` the images are split between the processes; the main one writes.
"""
import os
import sys

import numpy as np

from spatial_erasure import cli
from spatial_erasure.distributed import process_device, process_state
from spatial_erasure.erasure_file import file_hash, file_name_part, names_by_stem, read_erasure, recorded_base
from spatial_erasure.evaluation.collateral import collateral, cut_by_kind
from spatial_erasure.evaluation.metrics import make_judge
from spatial_erasure.models import BUNDLED_ERASURES, describe, load_pipeline
from spatial_erasure.phrasings import KINDS, PER_STYLE, SEED, STYLED_KINDS, unseen_phrasings
from spatial_erasure.reports import atomic_write_text, markdown_table, save_figure, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.toyart.world import STYLES, SUBJECTS
from spatial_erasure.worlds import world_of



def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasures", nargs="+", default=BUNDLED_ERASURES, help="erasure .safetensors files (default: the bundled ESD-x "
      "and scaled grid files of Van Gogh, paper and recommended, models/)")
    a("--concept", default="Vincent van Gogh", help=f"the erased style, one of: {', '.join(STYLES)}")
    a("--per_style", type=int, default=PER_STYLE, help="images per style and kind (no-style prompts: per subject)")
    a("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS), metavar="KIND",
      help=cli.choices_help(KINDS))
    a("--clip_model", default="openai/clip-vit-large-patch14", help="CLIP judge for real SD")
    cli.add_common_args(p, None, "output folder (default: results/collateral/<concept>)", model=None,
                        model_help="base pipeline (default: the one the first erasure file was trained on)",
                        seed=SEED, seed_help="seed of the first image (image i: seed + i, the same for every model)",
                        steps=None, guidance=None)
    args = p.parse_args(argv)
    cli.require_positive(vars(args), "per_style")
    return args


def cells(models, measure, kinds):
    """Table rows: one per style, one column per kind; a cell lists every model's rate, base first."""
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    return [{"style": s, **{k: " / ".join(fmt(m[measure][s][k]) for m in models.values()) for k in kinds}}
            for s in STYLES]


def heatmaps(models, kinds, path, title):
    """Style x kind per model (columns): top row the share recognised as the style asked for, bottom
    row the share whose subject is kept."""
    import textwrap

    from matplotlib.figure import Figure
    fig = Figure(figsize=(1.6 + 2.4 * len(models), 7.4), layout="constrained")
    axes = fig.subplots(2, len(models), squeeze=False)
    for row, (measure, what) in enumerate([("style_rate", "style recognised"), ("subject_rate", "subject kept")]):
        for col, (name, m) in enumerate(models.items()):
            ax = axes[row][col]
            grid = np.array([[np.nan if m[measure][s][k] is None else m[measure][s][k] for k in kinds]
                             for s in STYLES])
            ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn")
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, "" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=6)
            ax.set_xticks(range(len(kinds)), kinds, fontsize=6, rotation=40, ha="right")
            ax.set_yticks(range(len(STYLES)), STYLES if col == 0 else [], fontsize=6)
            ax.set_title(f"{textwrap.fill(name, 30)}\n{what}", fontsize=7)
    fig.suptitle(title, fontsize=8)
    save_figure(fig, path)


def summary_table(models):
    """One row per model and kind: target, retain and subject rates (and the no-style agreement with base)."""
    rows = [{"model": name, "kind": k, **v} for name, m in models.items() for k, v in m["by_kind"].items()]
    return markdown_table(rows, ["model", "kind", "target_rate", "retain_rate", "subject_rate", "same_style_as_base"])


def report_markdown(models, args, report):
    """collateral.md: the summary per model and kind, then style x kind tables (cells: base / each erasure)."""
    kinds = [k for k in STYLED_KINDS if k in args.kinds]
    cut = ", ".join(f"{k} {v}" for k, v in report["cut_by_text_encoder"].items() if v) or "none"
    md = [f"# Collateral on unseen phrasings: {args.concept}\n",
          f"{report['base_model']}; judge: {report['judge']}; {report['phrasings']} phrasings (`--per_style "
          f"{args.per_style}`, seed {args.seed}), {report['num_inference_steps']} steps, guidance "
          f"{report['guidance_scale']}. Models: " + ", ".join(f"`{k}`" for k in models) + ". Phrasings longer than "
          f"the text encoder's window, their tails cut: {cut}.\n",
          "target_rate: images of the concept still recognised as it; retain_rate: images of every other style "
          "recognised as that style; subject_rate: subject kept; same_style_as_base (no-style prompts): the "
          "style painted by default is the base model's for the same seed.\n",
          summary_table(models), "![style x kind](collateral.png)\n" if kinds else "",
          "## Style recognised, per style and kind\n", "Cells: " + " / ".join(models) + ".\n",
          markdown_table(cells(models, "style_rate", kinds), ["style", *kinds]),
          "## Subject kept, per style and kind\n", "Cells: " + " / ".join(models) + ".\n",
          markdown_table(cells(models, "subject_rate", kinds), ["style", *kinds])]
    if "no_style" in args.kinds:
        rows = [{"model": name, **{u: m["no_style"]["subject_rate"][u] for u in SUBJECTS},
                 "default styles": ", ".join(f"{s} {v:.2f}" for s, v in m["no_style"]["styles"].items())}
                for name, m in models.items()]
        md += ["## No style word: subject kept, and the style painted by default\n",
               markdown_table(rows, ["model", *SUBJECTS, "default styles"])]
    return "\n".join(md)


@cli.reports_errors
def main(args):
    if args.concept not in STYLES:
        cli.fail(f"--concept {args.concept!r} is not a style of the phrasings; choose one of: {', '.join(STYLES)}")
    erasures = names_by_stem(args.erasures)
    metas = {name: read_erasure(path)[1] for name, path in erasures.items()}   # a bad file fails now, in one line
    pipe = load_pipeline(args.base_model or recorded_base(metas[next(iter(metas))]),
                         device=process_device(args.device))
    steps, guidance = sampling_defaults(world_of(pipe), args.num_inference_steps, args.guidance_scale)
    judge = make_judge(pipe, args.concept, args.clip_model, styles=[s for s in STYLES if s != args.concept],
                       subjects=SUBJECTS)
    out = args.output or os.path.join("results", "collateral", file_name_part(args.concept))
    phrasings = unseen_phrasings(args.per_style, args.seed, args.kinds)
    state = process_state()
    state.print(f"{describe(pipe)}\njudge: {judge.name}; {len(phrasings)} phrasings x {1 + len(erasures)} models")
    res = collateral(pipe, judge, phrasings, erasures, os.path.join(out, "images"), args.concept, args.seed,
                     steps, guidance)
    if not state.is_main_process:     # every process holds every image and verdict; the main one writes
        return 0
    report = {"concept": args.concept, "base_model": describe(pipe), "judge": judge.name, "num_inference_steps": steps,
              "guidance_scale": guidance, "phrasings": len(phrasings), "kinds": {k: KINDS[k] for k in args.kinds},
              "cut_by_text_encoder": cut_by_kind(pipe.tokenizer, phrasings),
              "erasures": {name: {"path": erasures[name], "file_hash": file_hash(erasures[name]),
                                  **{k: m.get(k) for k in ("method", "concept")}}
                           for name, m in metas.items()},
              "args": vars(args), "models": res["models"], "rows": res["rows"]}
    write_json(os.path.join(out, "collateral.json"), report)
    kinds = [k for k in STYLED_KINDS if k in args.kinds]
    if kinds:
        heatmaps(res["models"], kinds, os.path.join(out, "collateral.png"),
                 f"unseen phrasings, concept {args.concept}: share of images per style and kind")
    atomic_write_text(os.path.join(out, "collateral.md"),
                      report_markdown(res["models"], args, report))
    print(summary_table(res["models"]))
    print(f"wrote {out}/collateral.json, collateral.md" + (", collateral.png" if kinds else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
