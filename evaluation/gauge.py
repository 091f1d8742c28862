"""Does an erasure file keep the picture? One command, the twin numbers of each file, in minutes on a CPU.

    python evaluation/gauge.py models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-recommended.safetensors
    python evaluation/gauge.py models/grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors FILE ...

Each file is measured where it is used, from its own metadata (its concept, its base model):
- a text-to-image (4-channel) file globally, by evaluation/twin_evaluation.py: the erased model on the
  concept's held-out phrasings against the base model on their neutral twins, seed for seed;
- an inpainting (9-channel) file inside masks, by evaluation/spatial_evaluation.py: neutral photos
  inpainted in grid and held-out masks.
Then one table: concept rate, twin distance (0 = paints the base model's neutral twin, 1 = no
erasure), FD ratio (the judge's features against the base twins, over the base model's own seed
spread), what is kept (subject globally; the other artists' rates inside masks), the style that
replaces the concept, and for masks the largest pixel change outside them after paste-back.

Both evaluations cache their images under --output, so a second file on the same base model and
concept only generates its own images (about a minute on the toy model). Toy models only: both judges
are the bundled toy classifier (twin_evaluation.py alone also takes real SD with a CLIP judge).
Exits 1 when a bar of either evaluation is missed.
"""
import json
import os
import subprocess
import sys

from spatial_erasure import cli
from spatial_erasure.erasure_file import file_name_part, read_erasure, recorded_base
from spatial_erasure.reports import markdown_table
from spatial_erasure.toyart.world import ARTISTS

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["file", "where", "concept_rate", "twin_distance", "fd_ratio", "kept", "replaced_by", "outside_maxdiff"]


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("erasures", nargs="+", help="erasure .safetensors files")
    p.add_argument("--output", default=os.path.join("results", "gauge"), help="folder of the evaluations' "
                   "reports and image caches (<output>/<concept>/global, <output>/<concept>/masks)")
    p.add_argument("--kinds", nargs="+", metavar="KIND", help="global: the kinds of held-out phrasings "
                   "(twin_evaluation.py --kinds; default: all of them, 180 pairs)")
    p.add_argument("--subjects", nargs="+", metavar="SUBJECT", help="masks: one neutral photo per subject "
                   "(spatial_evaluation.py --subjects; default: its four)")
    return p.parse_args(argv)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def where_used(meta):
    """("masks", base) for a file of an inpainting (9-channel) model, else ("global", base): grid files
    record their denoiser's input channels, ESD files are text-to-image."""
    return ("masks" if meta.get("unet_in_channels") == 9 else "global"), recorded_base(meta)


def run(script, argv):
    """An evaluation script as its own process (its output streams through); its exit code."""
    return subprocess.run([sys.executable, os.path.join(HERE, script), *argv]).returncode


def global_rows(report, names):
    for name in names:
        m = report["models"][name]
        yield {"file": name, "where": "global", "concept_rate": m["concept_rate"], "twin_distance": m["twin_distance"],
               "fd_ratio": m["fd_ratio"], "kept": f"subject {m['subject_ratio']:.2f}",
               "replaced_by": f"{m['top_excess_style']} +{m['style_excess']:.2f}", "outside_maxdiff": ""}


def mask_rows(report, names):
    by_name = {s["model"]: s for s in report["summary"]}
    for name in names:
        s, instead = by_name[name], report["instead_in_mask"][name]["styles"]
        ratios = {k[:-len(" ratio")]: v for k, v in s.items() if k.endswith(" ratio")}
        worst = min(ratios, key=ratios.get)
        yield {"file": name, "where": "masks (held-out)", "concept_rate": s["target_rate_heldout_masks"],
               "twin_distance": s["twin_distance_heldout_masks"], "fd_ratio": s["fd_ratio"],
               "kept": f"{worst.split()[-1]} {ratios[worst]:.2f} (worst artist)",
               "replaced_by": max(instead, key=instead.get), "outside_maxdiff": s["pasted_maxdiff_outside"]}


@cli.reports_errors
def main(args):
    groups = {}                                # (concept, where, base) -> [path]
    for path in args.erasures:
        meta = read_erasure(path)[1]           # a bad file fails here, in one line
        concept = meta.get("concept", "")
        if concept not in ARTISTS:
            cli.fail(f"{path} erases {concept!r}; the gauge measures toy-model artist erasures ({', '.join(ARTISTS)}); "
                     "for real SD use evaluation/twin_evaluation.py with a CLIP judge")
        where, base = where_used(meta)
        groups.setdefault((concept, where, base), []).append(path)
    rows, code = [], 0
    for (concept, where, base), paths in groups.items():
        out = os.path.join(args.output, file_name_part(concept), where)
        names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
        report = os.path.join(out, "twin.json" if where == "global" else "spatial.json")
        if os.path.exists(report):
            os.remove(report)                  # never read an earlier run's report (the image caches stay)
        if where == "global":
            code |= run("twin_evaluation.py", ["--concept", concept, "--base_model", base, "--output", out,
                                               *(["--kinds", *args.kinds] if args.kinds else []), "--erasures", *paths])
            rows += list(global_rows(read_json(report), names)) if os.path.exists(report) else []
        else:
            others = [a for a in ["Claude Monet", "Pablo Picasso", "Andy Warhol", "Vincent van Gogh"]
                      if a != concept][:3]
            code |= run("spatial_evaluation.py", ["--target", concept, "--others", *others, "--base_model", base,
                                                  "--output", out,
                                                  *(["--subjects", *args.subjects] if args.subjects else []),
                                                  "--erasures", *paths])
            rows += list(mask_rows(read_json(report), names)) if os.path.exists(report) else []
    print("\n" + markdown_table(rows, COLUMNS))
    return 1 if code else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
