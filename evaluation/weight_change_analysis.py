"""How much each erasure file changes its base denoiser (UNet or transformer): ||dW||, ||W|| and
||dW||/||W|| per tensor, by block and by projection as its model family names them, and across files.

    python evaluation/weight_change_analysis.py            # every erasure file in models/
    python evaluation/weight_change_analysis.py models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors \\
        models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors --output results/weight_change

Each file is compared with the base model its metadata records (or --base_model), after checking
the base denoiser's fingerprint. Writes to --output: <file stem>.csv (one row per tensor), report.md
(totals, tables by block and by projection, and with several files a comparison with ratios
against the first file), weight_change.json (the same numbers and the arguments) and
relative_change_by_block.png. Everything is computed before anything is written.
"""
import csv
import glob
import io
import os
import sys

from matplotlib.figure import Figure

from spatial_erasure import cli
from spatial_erasure.evaluation.weight_change import (GROUP_COLUMNS, ROW_COLUMNS, analyse, block_order, comparison,
                                                      reference)
from spatial_erasure.families import FAMILIES
from spatial_erasure.models import MODELS_DIR
from spatial_erasure.reports import atomic_write_text, markdown_table, save_figure, write_json

COMPARE_COLUMNS = ["file", "method", "tensors", "parameters", "dW_norm", "dW_ratio", "mean_rel_change",
                   "mean_rel_ratio"]


def default_files():
    """Top-level erasure files in models/ (not pipeline folders, not resumable *.state.safetensors checkpoints)."""
    files = glob.glob(os.path.join(MODELS_DIR, "*.safetensors"))
    return sorted(f for f in files if not f.endswith(".state.safetensors"))


def rows_csv(rows):
    """One CSV line per tensor; a zero base tensor's undefined ratio is an empty cell."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=ROW_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows({k: "" if r[k] is None else r[k] for k in ROW_COLUMNS} for r in rows)
    return buf.getvalue()


def fmt(x, spec=".4g"):
    return "n/a" if x is None else format(x, spec)


def show(key, value):
    """Table cell: ratios as '2.70x', floats to 4 significant digits (relative changes are often < 0.001)."""
    if key.endswith("_ratio") and value is not None:
        return fmt(value, ".2f") + "x"
    if key == "parameters" and isinstance(value, int):
        return f"{value:,}"
    return fmt(value) if value is None or isinstance(value, float) else value


def table(rows, columns):
    return markdown_table([{k: show(k, v) for k, v in r.items()} for r in rows], columns)


def report_markdown(results, ref, comp):
    """The markdown report: definitions, real-size reference counts, comparison, then one section per file."""
    md = ["# Weight change of erasure files\n",
          "dW = erased - base tensor; norms are Frobenius norms. A group's ||dW|| is the norm of all its tensors' "
          "changes together; `rel_change` = group ||dW|| / group ||W||; `mean_rel_change` = unweighted mean of the "
          "per-tensor ||dW||/||W||. Tensors and parameters are counted separately.\n"]
    arch, counts = ref
    for m, c in counts.items():
        md.append(f"Reference, the {arch} architecture at real size (counted on the meta device): {m} trains "
                  f"{c['tensors']} tensors = {c['parameters']:,} parameters ({c['parameters'] / 1e6:.1f}M).\n")
    if len(results) > 1:
        md += ["## Comparison (ratios against the first file)\n",
               table(comp, COMPARE_COLUMNS)]
        md += [f"- {c['file']} / {comp[0]['file']}: total ||dW|| = {fmt(c['dW_ratio'], '.2f')}x, mean relative "
               f"change = {fmt(c['mean_rel_ratio'], '.2f')}x" for c in comp[1:]]
        md.append("")
    for r in results:
        t, e = r["totals"], r["expected"]
        rec = (r["recorded_counts"]["tensors"], r["recorded_counts"]["parameters"])
        check = (f"checked, {r['base_fingerprint']}" if r["fingerprint_checked"]
                 else f"not checked (recorded {r['recorded_fingerprint']}, base {r['base_fingerprint']})")
        md += [f"## {r['label']}\n",
               f"- method {r['method']}, concept {r['concept']!r}" + (f", preset {r['preset']}" if r["preset"] else ""),
               f"- base model {r['base_model']} (fingerprint {check})",
               f"- {t['tensors']} tensors = {t['parameters']:,} parameters in the file; "
               f"{t['tensors_changed']} tensors ({t['parameters_changed']:,} parameters) changed"
               + ("" if rec == (None, None) or rec == (t["tensors"], t["parameters"]) else
                  f" (the metadata records {rec[0]} tensors, {rec[1]} parameters)"),
               (f"- {r['method']} selects {e['tensors']} tensors = {e['parameters']:,} parameters of the base; "
                f"the file's keys {'are exactly' if e['file_matches_selection'] else 'differ from'} that selection")
               if e else "- no known train method recorded: no expected selection",
               f"- total ||dW|| = {fmt(t['dW_norm'])}, ||W|| = {fmt(t['W_norm'])}, relative {fmt(t['rel_change'])}; "
               f"mean relative change {fmt(t['mean_rel_change'])}, max {fmt(t['max_rel_change'])} "
               f"({t['max_rel_tensor']})\n",
               "### By block\n", table(r["by_block"], ["block"] + GROUP_COLUMNS),
               "### By projection\n", table(r["by_projection"], ["projection"] + GROUP_COLUMNS)]
    return "\n".join(md)


def block_figure(results):
    """Grouped bars: relative change (block ||dW|| / block ||W||) per denoiser block, one bar per file."""
    family = FAMILIES[results[0]["family"]]
    blocks = sorted({g["block"] for r in results for g in r["by_block"]}, key=lambda b: block_order(b, family))
    fig = Figure(figsize=(1.0 + 0.9 * len(blocks) * max(1, len(results)) ** 0.5, 3.4))
    ax = fig.subplots()
    width = 0.8 / len(results)
    for i, r in enumerate(results):
        rel = {g["block"]: g["rel_change"] or 0.0 for g in r["by_block"]}
        ax.bar([b + (i - (len(results) - 1) / 2) * width for b in range(len(blocks))],
               [rel.get(b, 0.0) for b in blocks], width, label=r["label"])
    ax.set_xticks(range(len(blocks)), blocks)
    ax.set_xlabel(f"{family.NAME} block")
    ax.set_ylabel("||dW|| / ||W|| of the block")
    ax.set_title("relative weight change by block", fontsize=9)
    ax.legend(fontsize=6)
    return fig


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("files", nargs="*", help="erasure .safetensors files (default: every top-level *.safetensors in models/)")
    cli.add_model_arg(p, None, "base pipeline folder or hub id for every file (default: the one each file records)")
    a("--no_check_base", action="store_true", help="analyse even when the base UNet's fingerprint differs from "
                                                   "the recorded one")
    cli.add_output_arg(p, "results/weight_change", "output folder")
    return p.parse_args(argv)


@cli.reports_errors
def main(args):
    files = args.files or default_files()
    if not files:
        cli.fail(f"no erasure files given and none in {MODELS_DIR}; pass .safetensors files")
    cache = {}
    # every file is read and checked before anything is written: a bad one leaves no half report
    results = [analyse(f, args.base_model, not args.no_check_base, cache) for f in files]
    comp = comparison(results)
    families = {r["family"] for r in results}
    if len(families) > 1:
        cli.fail(f"these files erase from models of different families ({', '.join(sorted(families))}); "
                 "analyse each family's files in its own run")
    ref = reference(sorted({r["method"] for r in results if r["method"]}), FAMILIES[results[0]["family"]])

    out = args.output
    for r in results:
        r["csv"] = os.path.join(out, f"{r['label']}.csv")
        atomic_write_text(r["csv"], rows_csv(r["rows"]))
    atomic_write_text(os.path.join(out, "report.md"), report_markdown(results, ref, comp))
    write_json(os.path.join(out, "weight_change.json"),
               {"args": vars(args), "reference_architecture": ref[0], "reference": ref[1], "comparison": comp,
                "files": results})
    save_figure(block_figure(results), os.path.join(out, "relative_change_by_block.png"))

    print(table(comp, COMPARE_COLUMNS), end="")
    for m, c in ref[1].items():
        print(f"{ref[0]} reference: {m} = {c['tensors']} tensors, {c['parameters']:,} parameters")
    print(f"wrote {len(results)} CSV, report.md, weight_change.json, relative_change_by_block.png to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
