"""Real-size benchmark (not a test): ESD-x and the scaled grid preset on Stable Diffusion UNets of
real size with random weights (spatial_erasure.architectures: SD 1.4, SD-inpainting, SD 2, SDXL;
ESD-x on the SD3-medium transformer), per x_t source, plus the memory of the reference two-UNet
design at the same settings.

    python bench/real_size.py                                   # CPU: 256 px, 10 steps, 2 iterations a cell
    python bench/real_size.py --device cuda --native            # GPU: native resolution, 50 steps, bf16
    python bench/real_size.py --architectures sdxl --methods esd-x --sources stream
    python bench/real_size.py --architectures sd3-medium --output results/bench/sd3  # SD3-medium's row

Every cell runs the real entry script (original_esd/esd_sd.py, esd_sdxl.py, esd_sd3.py or
inpainting_erasure/grid_erasure.py) in its own process, on a pipeline folder saved once under
--folder and loaded through load_pipeline like any checkpoint, and reads its JSON report. The text
encoders and VAE are tiny (only their output shapes matter to the UNet), so the numbers are the
UNet's. Reported per cell: seconds per iteration; UNet forward-equivalents per iteration (a
backward counts 2), as run and at 50 steps; setup seconds (grid source images, bank or stream
warm-up); peak memory of training (RSS on CPU, torch.cuda.max_memory_allocated on GPU) and of
loading; wall time projected for 200 and 500 iterations at the preset's sizes (setup forwards at
the preset's bank and prompt counts, timed at the run's seconds per forward). The grid cells train
on `--num_prompts` prompts (the scaled preset's 100 source images are projected, not generated).
Writes results/bench/real_size.json and .md.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch

from spatial_erasure.architectures import ARCHITECTURES, FLOW_ARCHITECTURES, count_parameters, save_pipeline
from spatial_erasure.recipes import PRESETS
from spatial_erasure.reports import atomic_write_text, markdown_table, write_json
from spatial_erasure.trainer import PRECISIONS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {"esd-x": "ESD-x (original_esd/)", "grid": "grid erasure, scaled preset (inpainting_erasure/)"}
SOURCES = ["sample", "cache", "stream"]
ESD_BANK = 8                     # esd_sd.py's default --bank_size
SCALED = PRESETS["scaled"]       # the grid preset the projection uses: 100 prompts, banks 256 + 64, 500 iterations
SD3 = [k for k, a in FLOW_ARCHITECTURES.items() if a.family == "sd3"]   # built as pipelines (Flux is only counted)
LARGE = {"sdxl", *SD3}           # bf16 and gradient checkpointing by default; only --sdxl_cells run on a CPU


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--architectures", nargs="+", default=["sd14", "sdxl", "sd-inpaint", "sd2"], choices=[*ARCHITECTURES, *SD3],
      help="denoisers to measure, in this order (default: the UNets, SD 1.4 and SDXL first; sd3-medium and "
           "sd3.5-large when named)")
    a("--methods", nargs="+", default=list(METHODS), choices=list(METHODS), help="methods (default: both)")
    a("--sources", nargs="+", default=SOURCES, choices=SOURCES, help="x_t sources (default: all)")
    a("--two_unet", action=argparse.BooleanOptionalAction, default=True,
      help="also run each (architecture, method) with --teacher copy and stream: the reference's second UNet")
    a("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    a("--native", action="store_true", help="native resolution and 50 steps (default on a GPU run: use it)")
    a("--resolution", type=int, default=None, help="image size (default: 256, or native with --native)")
    a("--num_inference_steps", type=int, default=None, help="scheduler steps (default: 10, or 50 with --native)")
    a("--iterations", type=int, default=2, help="training iterations per cell (default: %(default)s)")
    a("--num_prompts", type=int, default=2, help="grid source images per cell (default: %(default)s)")
    a("--bank_size", type=int, default=2, help="cache bank per cell; grid retain bank is half (default: %(default)s)")
    a("--mixed_precision", default=None, choices=list(PRECISIONS),
      help="default: bf16 on cuda and for SDXL and SD3 on cpu (fits 24 GB), else no")
    a("--gradient_checkpointing", action=argparse.BooleanOptionalAction, default=None,
      help="default: on for SDXL and SD3, off otherwise")
    a("--compile", action="store_true", help="pass --compile to every cell")
    a("--sdxl_cells", default="esd-x:stream", help="method:source cells run for SDXL and SD3, comma-separated; "
                                                   "'all' for every cell (default: %(default)s, what fits a 2-core "
                                                   "CPU)")
    a("--folder", default="runs/real_size", help="pipeline folders, written once (default: %(default)s)")
    a("--timeout", type=int, default=3600, help="seconds per cell before it is reported as failed")
    a("--resume", action="store_true", help="keep the cells of an earlier real_size.json in --output that ran with "
                                            "the same settings, and run only the others")
    a("--output", default="results/bench", help="output folder (default: %(default)s)")
    return p.parse_args(argv)


def cells(args):
    """(architecture, method, source, teacher) for every cell that applies: ESD is text-to-image (no
    9-channel UNet); grid erasure is SD 1.x/2.x and SD-inpainting (no SDXL, no SD3)."""
    sdxl = None if args.sdxl_cells == "all" else {tuple(c.split(":")) for c in args.sdxl_cells.split(",")}
    for arch in args.architectures:
        for method in args.methods:
            if (method == "esd-x" and arch == "sd-inpaint") or (method == "grid" and arch in LARGE):
                continue
            for source in args.sources:
                if sdxl is None or arch not in LARGE or (method, source) in sdxl:
                    yield arch, method, source, "originals"
            if args.two_unet and (sdxl is None or arch not in LARGE or (method, "stream") in sdxl):
                yield arch, method, "stream", "copy"


def command(arch, method, source, teacher, folder, out, args):
    res = args.resolution or ((FLOW_ARCHITECTURES.get(arch) or ARCHITECTURES[arch]).resolution if args.native else 256)
    steps = args.num_inference_steps or (50 if args.native else 10)
    xl = arch in LARGE
    precision = args.mixed_precision or ("bf16" if args.device.startswith("cuda") or xl else "no")
    common = ["--base_model", folder, "--resolution", str(res), "--num_inference_steps", str(steps),
              "--iterations", str(args.iterations), "--xt_source", source, "--teacher", teacher, "--device",
              args.device, "--mixed_precision", precision, "--no-resume", "--checkpoint_every", "0"]
    if args.gradient_checkpointing or (args.gradient_checkpointing is None and xl):
        common.append("--gradient_checkpointing")
    if args.compile:
        common.append("--compile")
    if method == "esd-x":
        script = "original_esd/esd_sd3.py" if arch in SD3 else "original_esd/esd_sdxl.py" if xl \
            else "original_esd/esd_sd.py"
        return [script, "--erase_concept", "Vincent van Gogh", "--bank_size", str(args.bank_size), "--output", out,
                *common], res, steps, precision
    return ["inpainting_erasure/grid_erasure.py", "--preset", "scaled", "--num_prompts", str(args.num_prompts),
            "--bank_size", str(args.bank_size), "--retain_bank_size", str(max(1, args.bank_size // 2)),
            "--output", os.path.join(out, "grid.safetensors"), *common], res, steps, precision


def projected(log, method, steps, iterations):
    """Setup at the preset's sizes (grid: 100 source images and banks of 256 + 64; ESD: a bank of 8) timed at
    this run's seconds per setup forward, plus `iterations` at the measured seconds per iteration."""
    grid, source = method == "grid", log["xt_source"]
    setup_s = log.get("source_seconds", 0) + log["bank_seconds"] + log.get("retain_bank_seconds", 0) \
        + log.get("warmup_seconds", 0) + log.get("retain_warmup_seconds", 0)
    setup_f = log.get("source_forwards", 0) + log["bank_forwards"] + log.get("retain_bank_forwards", 0) \
        + log.get("warmup_forwards", 0) + log.get("retain_warmup_forwards", 0)
    per_forward = (setup_s / setup_f if setup_f
                   else log["seconds_per_iteration"] / log["forward_equivalents_per_iteration"])
    preset_f = (2 * steps * SCALED["num_prompts"] if grid else 0) + log.get("warmup_forwards", 0) \
        + log.get("retain_warmup_forwards", 0)
    if source == "cache":
        preset_f += 2 * steps * ((SCALED["bank_size"] + SCALED["retain_bank_size"]) if grid else ESD_BANK)
    return round(preset_f * per_forward + iterations * log["seconds_per_iteration"], 1)


def fe_at_50(log, method, steps):
    """UNet forward-equivalents per iteration at 50 steps: the training rows, plus x_t sampling (sample: 49
    guided forwards a trajectory on average; cache: the preset's bank, amortized; stream: its warm-up, amortized)."""
    grid, source = method == "grid", log["xt_source"]
    trajectories = 2 if grid and log.get("retain_xt") == "own" else 1
    iterations = SCALED["iterations"] if grid else 200
    if source == "sample":
        sampling = 49 * trajectories
    elif source == "cache":
        sampling = 100 * ((SCALED["bank_size"] + SCALED["retain_bank_size"]) if grid else ESD_BANK) / iterations
    else:
        sampling = (log.get("warmup_forwards", 0) + log.get("retain_warmup_forwards", 0)) * 50 / steps / iterations
    return round(log["training_forward_equivalents"] + sampling, 2)


def run_cell(cell, folders, args):
    arch, method, source, teacher = cell
    with tempfile.TemporaryDirectory() as out:
        cmd, res, steps, precision = command(arch, method, source, teacher, folders[arch], out, args)
        row = {"architecture": arch, "method": method, "xt_source": source, "teacher": teacher, "resolution": res,
               "steps": steps, "precision": precision}
        start = time.time()
        try:
            r = subprocess.run([sys.executable, *cmd], cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {**row, "status": f"failed: over {args.timeout} s"}
        if r.returncode:
            why = "killed (out of memory?)" if r.returncode < 0 else (r.stderr.strip().splitlines() or ["?"])[-1]
            return {**row, "status": f"failed: {why[:200]}"}
        log = json.load(open(next(os.path.join(out, f) for f in os.listdir(out) if f.endswith(".json"))))
    setup = sum(log.get(k, 0) for k in ("source_seconds", "bank_seconds", "retain_bank_seconds", "warmup_seconds",
                                        "retain_warmup_seconds"))
    return {**row, "status": "ok", "wall_s": round(time.time() - start, 1),
            "s_per_it": log["seconds_per_iteration"], "fe_per_it": log["forward_equivalents_per_iteration"],
            "fe_per_it_at_50": fe_at_50(log, method, steps), "setup_s": round(setup, 1),
            "bank_s": round(log["bank_seconds"] + log.get("retain_bank_seconds", 0), 1),
            "peak_MiB": log["peak_memory_mb"], "load_peak_MiB": log["load_peak_memory_mb"],
            "projected_200_s": projected(log, method, steps, 200),
            "projected_500_s": projected(log, method, steps, 500),
            "tensors": log["tensors_changed"], "parameters": log["parameters_changed"],
            "k_histogram": log.get("k_histogram")}


def earlier_rows(args):
    """Finished cells of an earlier report in --output, by cell, when they ran at this run's resolution, steps,
    precision and device (a bench run on a CPU takes hours; --resume picks it up)."""
    path = os.path.join(args.output, "real_size.json")
    if not os.path.exists(path):
        return {}
    report = json.load(open(path))
    if report.get("args", {}).get("device") != args.device:
        return {}
    kept = {}
    for r in report["rows"]:
        cell = (r["architecture"], r["method"], r["xt_source"], r["teacher"])
        _, res, steps, precision = command(*cell, "", "", args)
        if r["status"] == "ok" and (r["resolution"], r["steps"], r["precision"]) == (res, steps, precision):
            kept[cell] = r
    return kept


def bars(rows):
    """The issue's bars where the cells exist: stream <= 1/8 of sample's forward-equivalents (at 50 steps),
    stream's peak <= 60% of the two-UNet peak, every cell run."""
    out = {"every cell ran": {"value": sum(r["status"] == "ok" for r in rows), "of": len(rows),
                              "met": all(r["status"] == "ok" for r in rows)}}
    ok = {(r["architecture"], r["method"], r["xt_source"], r["teacher"]): r for r in rows if r["status"] == "ok"}
    for (arch, method, source, teacher), r in ok.items():
        if source != "stream" or teacher != "originals":
            continue
        sample, copy = ok.get((arch, method, "sample", "originals")), ok.get((arch, method, "stream", "copy"))
        if sample:
            v = r["fe_per_it_at_50"] / sample["fe_per_it_at_50"]
            out[f"{arch} {method}: stream / sample forward-equivalents (50 steps) <= 1/8"] = \
                {"value": round(v, 3), "met": v <= 1 / 8}
        if copy:
            v = r["peak_MiB"] / copy["peak_MiB"]
            out[f"{arch} {method}: stream peak / two-UNet peak <= 0.6"] = {"value": round(v, 3), "met": v <= 0.6}
    return out


def machine(device):
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def main(args):
    os.makedirs(args.folder, exist_ok=True)
    todo = list(cells(args))
    folders = {}
    for arch in dict.fromkeys(c[0] for c in todo):
        print(f"pipeline folder for {arch}: {(FLOW_ARCHITECTURES.get(arch) or ARCHITECTURES[arch]).hub_id} "
              "architecture, random weights")
        folders[arch] = save_pipeline(arch, os.path.join(args.folder, arch))
    sizes = {a: count_parameters(a)["total"] for a in folders}
    done = earlier_rows(args) if args.resume else {}
    rows = []
    for cell in todo:
        if cell in done:
            print("kept from the earlier run:", " ".join(cell), flush=True)
            rows.append(done[cell])
            continue
        print("running", " ".join(cell), flush=True)
        rows.append(run_cell(cell, folders, args))
        print({k: v for k, v in rows[-1].items() if k != "k_histogram"}, flush=True)
        report = write_report(rows, sizes, args, done=len(rows) == len(todo))     # after every cell: hours on a CPU
    return 0 if all(b["met"] for b in report["bars"].values()) else 1


def write_report(rows, sizes, args, done):
    """real_size.json and .md of the cells run so far; returns the report."""
    report = {"machine": machine(args.device), "args": vars(args), "rows": rows, "bars": bars(rows),
              "complete": done, "unet_parameters": sizes,
              "note": "random-weight UNets of real size; text encoders and VAE tiny (UNet cost only)"}
    write_json(os.path.join(args.output, "real_size.json"), report)
    cols = ["architecture", "method", "xt_source", "teacher", "resolution", "steps", "precision", "status", "s_per_it",
            "fe_per_it", "fe_per_it_at_50", "setup_s", "peak_MiB", "load_peak_MiB", "projected_200_s",
            "projected_500_s"]
    bar_lines = "\n".join(f"- {'MET ' if b['met'] else 'MISS'} {k}: {b['value']}" for k, b in report["bars"].items())
    text = (f"# Real-size benchmark ({report['machine']}, {time.strftime('%Y-%m-%d')})\n\n"
            f"`python bench/real_size.py {' '.join(sys.argv[1:])}`; {report['note']}"
            + ("" if done else f"; {len(rows)} cells so far") + f".\n\n{markdown_table(rows, cols)}\n\n{bar_lines}\n")
    atomic_write_text(os.path.join(args.output, "real_size.md"), text)
    if done:
        print(text)
    return report


if __name__ == "__main__":
    sys.exit(main(parse_args()))
