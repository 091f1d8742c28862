"""Benchmark ESD's x_t sources (not a test): seconds per iteration, UNet forwards per iteration,
bank cost and peak memory, on the toy model and on an SD-1.4-architecture UNet with random weights.

    python bench/esd_xt_sources.py                                    # toy model, 50 steps
    python bench/esd_xt_sources.py --sd14 --resolution 256 --device cuda

Each configuration runs original_esd/esd_sd.py in its own process (clean peak memory) and reads
its JSON log. Writes results/bench/esd_xt_sources.json and .md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

from spatial_erasure.models import TOY_MODEL
from spatial_erasure.reports import atomic_write_text, markdown_table, write_json
from spatial_erasure.trajectories import XT_SOURCES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--iterations", type=int, default=20, help="ESD iterations per configuration (default: %(default)s)")
    a("--num_inference_steps", type=int, default=50, help="scheduler steps (default: %(default)s)")
    a("--bank_size", type=int, default=8, help="bank trajectories for cache/noise (default: %(default)s)")
    a("--sd14", action="store_true", help="also benchmark the SD-1.4-architecture UNet (random weights)")
    a("--resolution", type=int, default=128, help="image size for the SD-1.4 UNet (default: %(default)s)")
    a("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    a("--output", default="results/bench", help="output folder (default: %(default)s)")
    return p.parse_args(argv)


def run(model, source, args, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(REPO, "original_esd/esd_sd.py"), "--erase_concept", "Vincent van Gogh",
               "--base_model", model, "--xt_source", source, "--iterations", str(args.iterations),
               "--num_inference_steps", str(args.num_inference_steps), "--bank_size", str(args.bank_size),
               "--output", tmp, "--no-resume", *extra] + (["--device", args.device] if args.device else [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        log = next(f for f in os.listdir(tmp) if f.endswith(".json"))
        with open(os.path.join(tmp, log)) as f:
            return json.load(f)


def main(args):
    models = [("toy", TOY_MODEL, [])]
    tmp = None
    if args.sd14:
        from spatial_erasure.architectures import save_pipeline
        tmp = tempfile.TemporaryDirectory()
        folder = save_pipeline("sd14", os.path.join(tmp.name, "sd14"))     # fp16 on disk, loaded as fp32
        models.append((f"sd14-arch@{args.resolution}px", folder, ["--resolution", str(args.resolution)]))
    rows = []
    for name, folder, extra in models:
        for source in XT_SOURCES:
            log = run(folder, source, args, extra)
            rows.append({"model": name, "xt_source": source, "seconds_per_iteration": log["seconds_per_iteration"],
                         "forwards_per_iteration": log["forwards_per_iteration"], "bank_seconds": log["bank_seconds"],
                         "bank_forwards": log["bank_forwards"], "peak_memory_mb": log["peak_memory_mb"],
                         "total_seconds": round(log["train_seconds"] + log["bank_seconds"], 2)})
            print(rows[-1])
        sample = next(r for r in rows if r["model"] == name and r["xt_source"] == "sample")
        for r in rows:
            if r["model"] == name:
                r["speedup_per_iteration"] = round(sample["seconds_per_iteration"] / r["seconds_per_iteration"], 2)
    machine = f"{args.device or 'auto'} device, iterations={args.iterations}, steps={args.num_inference_steps}"
    write_json(os.path.join(args.output, "esd_xt_sources.json"), {"args": vars(args), "rows": rows})
    table = markdown_table(rows, ["model", "xt_source", "seconds_per_iteration", "speedup_per_iteration",
                                  "forwards_per_iteration", "bank_seconds", "bank_forwards", "peak_memory_mb"])
    atomic_write_text(os.path.join(args.output, "esd_xt_sources.md"), f"{machine}\n\n{table}")
    print(table)
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main(parse_args())
