"""Do the LoRA exports of an erasure file erase and retain like the file itself? Toy-model rates per rank.

    python evaluation/export_rates.py --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors
    python evaluation/export_rates.py --erasure models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors --ranks 2 4 8

For each rank and LoRA format, the file is exported (spatial_erasure.export) and loaded into a fresh
pipeline by plain diffusers alone (`StableDiffusionPipeline.from_pretrained` + `load_lora_weights`: no
project code in the loading path); the dense file is applied with `apply_erasure`. Every model
generates the same held-out images per style (toy_erasure_rates' set) and the toy classifier judges
them. `diffusers` carries the to_out.0 bias deltas (lora_B.bias), `kohya` has no slot for them and
drops them, so the two columns also measure what dropping the biases costs. The lowest rank whose
target rate and lowest other style are both within --tolerance of the dense file's is the bar.
Writes export_rates.json and .md.
"""
import os
import sys
import tempfile

from diffusers import DiffusionPipeline

from spatial_erasure import cli
from spatial_erasure.distributed import process_device
from spatial_erasure.erasure_file import apply_erasure, read_erasure, recorded_base
from spatial_erasure.evaluation.toy_model_quality import style_rates
from spatial_erasure.export import export
from spatial_erasure.models import TOY_CLASSIFIER, load_pipeline
from spatial_erasure.reports import atomic_write_text, markdown_table, write_json
from spatial_erasure.toyart.classifier import load_classifier
from spatial_erasure.toyart.world import STYLES


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasure", required=True, help="erasure .safetensors file (trained on a toy model)")
    a("--target", default="Vincent van Gogh", choices=STYLES, help="the erased style")
    a("--ranks", type=int, nargs="+", default=[1, 2, 4, 8], help="LoRA ranks to measure")
    a("--formats", nargs="+", default=["diffusers", "kohya"], choices=["diffusers", "kohya"],
      help="LoRA formats (diffusers carries the bias deltas, kohya drops them)")
    a("--per_style", type=int, default=32, help="images per style")
    a("--tolerance", type=float, default=0.02, help="bar: |rate - dense rate| for target and lowest other style")
    cli.add_common_args(p, None, "output folder (default: results/export_rates/<erasure file stem>)", model=None,
                        model_help="toy pipeline folder (default: the one the file records)", seed=5000)
    args = p.parse_args(argv)
    cli.require_positive(vars(args), "per_style")
    if min(args.ranks) < 1:
        cli.fail(f"--ranks must be at least 1, got {min(args.ranks)}")
    return args


def summary(name, rates, target, rank=None, fmt=None):
    """One table row: target rate, lowest other style (and which), subjects."""
    acc = rates["generated_style_acc"]
    other = min((s for s in STYLES if s != target), key=lambda s: acc[s])
    return {"model": name, "format": fmt, "rank": rank, "target_rate": round(acc[target], 4),
            "lowest_other": round(acc[other], 4), "lowest_other_style": other,
            "subjects": round(rates["generated_subject_acc"], 4)}


@cli.reports_errors
def main(args):
    _, meta = read_erasure(args.erasure)           # a bad file fails now, in one line
    base_model = args.base_model or recorded_base(meta)
    stem = os.path.basename(args.erasure).removesuffix(".safetensors")
    out = args.output or os.path.join("results", "export_rates", stem)
    clf = load_classifier(TOY_CLASSIFIER)
    device = process_device(args.device)

    def rates(pipe):
        return style_rates(pipe, clf, STYLES, args.per_style, args.seed, args.num_inference_steps,
                           args.guidance_scale)

    pipe = load_pipeline(base_model, device=device)
    rows = [summary("base", rates(pipe), args.target)]
    apply_erasure(pipe, args.erasure)
    dense = summary("dense file", rates(pipe), args.target)
    rows.append(dense)
    reports = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            for rank in args.ranks:
                path = os.path.join(tmp, f"{fmt}-{rank}.safetensors")
                report = export(args.erasure, fmt, path, rank=rank, base_model=base_model, bias="carry")   # measured
                reports[f"{fmt}-{rank}"] = {k: report.get(k) for k in ("max_rel_error", "mean_rel_error", "bias")}
                lora = DiffusionPipeline.from_pretrained(base_model, safety_checker=None,
                                                         use_safetensors=True).to(device)   # plain diffusers
                lora.set_progress_bar_config(disable=True)
                lora.load_lora_weights(path)
                row = summary(f"{fmt} LoRA", rates(lora), args.target, rank, fmt)
                row.update(max_rel_error=report.get("max_rel_error"), mean_rel_error=report.get("mean_rel_error"))
                rows.append(row)
                print(row, flush=True)
    bar = {}
    for fmt in args.formats:
        within = [r["rank"] for r in rows if r["format"] == fmt
                  and abs(r["target_rate"] - dense["target_rate"]) <= args.tolerance + 1e-9
                  and abs(r["lowest_other"] - dense["lowest_other"]) <= args.tolerance + 1e-9]
        bar[fmt] = min(within) if within else None
    write_json(os.path.join(out, "export_rates.json"), {"erasure": args.erasure, "args": vars(args), "rows": rows,
                                                       "lowest_rank_within_tolerance": bar, "exports": reports})
    cols = ["model", "rank", "target_rate", "lowest_other", "lowest_other_style", "subjects", "mean_rel_error"]
    text = (f"# LoRA exports of {os.path.basename(args.erasure)} ({args.per_style} images per style)\n\n"
            + markdown_table(rows, cols) + "\n\n" + "\n".join(
                f"- {fmt}: lowest rank within {args.tolerance:.0%} of the dense file: {r or 'none measured'}"
                for fmt, r in bar.items()) + "\n")
    atomic_write_text(os.path.join(out, "export_rates.md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
