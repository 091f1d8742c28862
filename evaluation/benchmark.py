r"""One table of erasure methods: how much is erased, what survives, what it costs.

    python evaluation/benchmark.py                       # toy model, every method, ~20 min on 2 CPU cores
    python evaluation/benchmark.py --methods ESD-x "grid scaled"
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        evaluation/benchmark.py ...      # 2 processes, the images split between them

Methods: ESD-x, ESD-x-strict, ESD-u (original_esd's paper recipe: on the toy model lr 7e-4, eta 4,
200 iterations, x_t sampled) and inpainting erasure with the basic, efficient and scaled presets
(paper recipe); variants with their own flags (METHODS): ESD-x with the stream x_t source, with
broad preservation (--preserve 200) and with adversarial erasure (--robust), the scaled preset with
--preserve 200 --direction twin --negative_guidance 2, with and without --robust; and the
recommended recipe (each script's default: the twin target) for ESD-x, with and without --robust,
and for the scaled preset. Each is trained
with a fixed seed, or reused when its file is already in models/ or in
--checkpoints (delete a file to retrain it). Each is then judged by the 48-test concept-impact
assessment (spatial_erasure.evaluation.concept_impact): UA on the target; IRA (other artists and
art styles) and CRA (objects and nature) on the rest; a Frechet distance between the judge's
features of base and erased images of all retain prompts; and, from each file's training report,
train seconds, seconds per iteration, peak memory, tensors and parameters changed.
With --attacks and --collateral reports (evaluation/attack_evaluation.py and collateral_evaluation.py
on the same files; rows are matched by the file's hash, n/a where a file was not evaluated), the
table adds robustness: collateral on unseen phrasings (coll_style: the lowest other style's rate,
coll_photo, coll_subj: subjects kept) and attack success rates (ASR_none before any attack,
ASR_prompt the largest over the prompt attacks, ASR_CI Concept Inversion, ASR_soft the soft-prompt
attack, ASR_worst the largest of all). Writes results/benchmark.md and results/benchmark.json;
images are cached under --work_dir. Under `accelerate launch` the images are split between the
processes (spatial_erasure.distributed; the same numbers as one process for existing files, while
training is data parallel and so not the one-process run) and the main process alone reports and writes.
"""
import json
import os
import sys
import time


from spatial_erasure import cli, esd, grid_erasure, recipes
from spatial_erasure.attacks.prompt_sets import ATTACK_KINDS
from spatial_erasure.distributed import machine_name, process_device, process_state
from spatial_erasure.erasure_file import file_hash, file_name_part, read_metadata
from spatial_erasure.evaluation.concept_impact import assess, load_tests, pooled
from spatial_erasure.evaluation.metrics import make_judge
from spatial_erasure.models import MODELS_DIR, describe, load_pipeline
from spatial_erasure.reports import atomic_write_text, markdown_table, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.toyart.world import STYLES
from spatial_erasure.worlds import world_of

# name: (trainer, flags[, file name with {concept}: variants of a trainer's default file]); flags[1] is the train
# method (ESD) or the preset (grid). The paper recipe's rows reproduce the reference and the published presets;
# the recommended recipe is each script's default (spatial_erasure.recipes).
PAPER = ["--recipe", "paper"]
STREAM = ["--xt_source", "stream", "--stream_width", "8", "--lr", "4e-4"]      # ESD-x's stream setting (issue 14)
PRESERVE = ["--preserve", "200"]      # with its measured defaults (one concept: the key/value penalty, weight 10)
TWIN = ["--direction", "twin", "--negative_guidance", "2"]      # grid: steer off the concept only, not the subject
METHODS = {"ESD-x": ("esd", ["--train_method", "esd-x", *PAPER]),          # the reference ESD for the model family
           "ESD-x-strict": ("esd", ["--train_method", "esd-x-strict", *PAPER]),
           "ESD-u": ("esd", ["--train_method", "esd-u", *PAPER]),
           "ESD-x stream": ("esd", ["--train_method", "esd-x", *PAPER, *STREAM],
                            "esd-{concept}-esd-x-stream.safetensors"),
           "ESD-x +preserve": ("esd", ["--train_method", "esd-x", *PAPER, *STREAM, *PRESERVE],
                               "esd-{concept}-esd-x-preserve.safetensors"),
           "ESD-x +preserve +robust": ("esd", ["--train_method", "esd-x", *PAPER, *STREAM, *PRESERVE, "--robust"],
                                       "esd-{concept}-esd-x-robust.safetensors"),
           "ESD-x recommended": ("esd", ["--train_method", "esd-x"]),
           "ESD-x recommended +robust": ("esd", ["--train_method", "esd-x", "--robust"],
                                         "esd-{concept}-from-{concept}-esd-x-recommended-robust.safetensors"),
           "grid basic": ("grid", ["--preset", "basic", *PAPER]),
           "grid efficient": ("grid", ["--preset", "efficient", *PAPER]),
           "grid scaled": ("grid", ["--preset", "scaled", *PAPER]),
           "grid scaled +preserve +twin": ("grid", ["--preset", "scaled", *PAPER, "--xt_source", "stream", *PRESERVE,
                                                    *TWIN], "grid-{concept}-scaled-esd-x-preserve.safetensors"),
           "grid scaled +preserve +twin +robust": ("grid", ["--preset", "scaled", *PAPER, "--xt_source", "stream",
                                                            *PRESERVE, *TWIN, "--robust"],
                                                   "grid-{concept}-scaled-esd-x-robust.safetensors"),
           "grid scaled recommended": ("grid", ["--preset", "scaled"])}


COST_KEYS = ("train_seconds", "bank_seconds", "retain_bank_seconds")     # a method's train_s, from its report


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--methods", nargs="*", default=list(METHODS), choices=list(METHODS), help="methods to compare (default: all)")
    a("--concept", default="Vincent van Gogh", help="the concept every method erases")
    a("--images_per_test", type=int, default=2, help="seeds per concept-impact test")
    a("--checkpoints", default="results/benchmark/checkpoints", help="where methods not in models/ are trained")
    a("--work_dir", default="results/benchmark", help="image cache")
    a("--train_only", action="store_true", help="train (or find) each method's file, print the paths and stop "
      "(scripts/robustness.sh trains the second artist's files so)")
    a("--attacks", default="results/attacks/{concept}/attacks.json", help="attack report to take ASR columns from")
    a("--collateral", default="results/collateral/{concept}/collateral.json",
      help="collateral report to take the unseen-phrasing columns from")
    a("--twin", default="results/twin/{concept}/twin.json", help="twin report (evaluation/twin_evaluation.py) to "
      "take the paints-the-twin columns from")
    cli.add_common_args(p, "results/benchmark.md", "markdown table; the JSON goes beside it", seed=0,
                        seed_help="training seed of every method", steps=None, guidance=None)
    return p.parse_args(argv)


def checkpoint(name, args):
    """The method's erasure file: reused from models/ or --checkpoints, else trained into --checkpoints."""
    kind, flags, *named = METHODS[name]
    common = ["--base_model", args.base_model, "--seed", str(args.seed)]
    common += ["--device", args.device] if args.device else []
    if named:
        file = named[0].format(concept=file_name_part(args.concept))
    elif kind == "esd":
        file = esd.default_name(args.concept, None, flags[1], "paper" if "paper" in flags else recipes.DEFAULT)
    else:
        file = os.path.basename(grid_erasure.default_output(grid_erasure.parse_args(["--concept", args.concept,
                                                                                      *flags])))
    argv = ["--erase_concept" if kind == "esd" else "--concept", args.concept, *flags, *common,
            "--output", os.path.join(args.checkpoints, file)]
    for folder in (MODELS_DIR, args.checkpoints):
        path = os.path.join(folder, file)
        if os.path.exists(path) and read_metadata(path).get("args", {}).get("seed", 0) == args.seed:
            return path, "reused"
    process_state().print(f"training {name}: {' '.join(argv)}")
    if kind == "esd":
        return esd.main(esd.parse_args(argv)), "trained"
    return grid_erasure.main(grid_erasure.parse_args(argv)), "trained"


ROBUSTNESS = ["coll_style", "coll_photo", "coll_subj", "ASR_none", "ASR_prompt", "ASR_CI", "ASR_soft", "ASR_worst"]
TWIN_COLUMNS = {"twin_dist": "twin_distance", "twin_FDx": "fd_ratio", "twin_subj": "subject_ratio",
                "twin_excess": "style_excess"}


def load_report(template, concept):
    """A report (JSON) for `concept`, or None when it is not there or is about another concept."""
    path = template.format(concept=file_name_part(concept))
    if not os.path.exists(path):
        return None
    with open(path) as f:
        report = json.load(f)
    return report if report.get("concept") == concept else None


def robustness(path, attacks, collateral, concept):
    """The robustness columns of one erasure file (None: the base model), from the reports' entries whose
    file hash is this file's; n/a (None) where a report did not evaluate it."""
    h = "base" if path is None else file_hash(path)
    cols = dict.fromkeys(ROBUSTNESS)
    if collateral:
        names = {"base": "base", **{e["file_hash"]: n for n, e in collateral["erasures"].items() if "file_hash" in e}}
        m = collateral["models"].get(names.get(h))
        if m:
            per_style = {s: [v for v in m["style_rate"][s].values() if v is not None] for s in STYLES if s != concept}
            mean = {s: sum(v) / len(v) for s, v in per_style.items() if v}
            cols["coll_style"] = min(v for s, v in mean.items() if s != "photo")
            cols["coll_photo"] = mean.get("photo")
            cols["coll_subj"] = m["by_kind"]["all styled kinds"]["subject_rate"]
    if attacks:
        m = next((r for r in attacks["models"] if (r["key"]["file"] or "base") == h), None)
        if m:
            asr = m["asr"]
            prompt = [asr[k] for k in ATTACK_KINDS if k != "none" and k in asr]
            cols.update({"ASR_none": asr.get("none"), "ASR_prompt": max(prompt) if prompt else None,
                         "ASR_CI": asr.get("inversion"), "ASR_soft": asr.get("soft_prompt"),
                         "ASR_worst": asr.get("worst")})
    return cols


def twin_columns(path, twin):
    """The paints-the-twin columns of one erasure file from the twin report's entry with its hash (None: n/a)."""
    cols = dict.fromkeys(TWIN_COLUMNS)
    if twin and path is not None:
        names = {e["file_hash"]: n for n, e in twin["erasures"].items()}
        m = twin["models"].get(names.get(file_hash(path)))
        if m:
            cols.update({c: m[k] for c, k in TWIN_COLUMNS.items()})
    return cols


@cli.reports_errors
def main(args):
    t0 = time.time()
    os.makedirs(args.checkpoints, exist_ok=True)
    state = process_state()
    files = {name: checkpoint(name, args) for name in args.methods}
    if args.train_only:
        for name, (path, how) in files.items():
            state.print(f"{name}: {path} ({how})")
        return 0
    pipe = load_pipeline(args.base_model, device=process_device(args.device))
    world = world_of(pipe)
    tests = load_tests("prompts", world)
    judge = make_judge(pipe, args.concept)
    steps, guidance = sampling_defaults(world, args.num_inference_steps, args.guidance_scale)
    attacks, collateral = load_report(args.attacks, args.concept), load_report(args.collateral, args.concept)
    twin = load_report(args.twin, args.concept)
    rows = []
    for name, (path, how) in files.items():
        meta = read_metadata(path)
        res = assess(pipe, judge, tests, path, os.path.join(args.work_dir, "images"), args.concept,
                     args.images_per_test, steps, guidance, {"UA": 0, "IRA": 0, "CRA": 0}, world=world)
        if not rows:    # the base model's own numbers, from the same images
            rows.append({"method": "base model", **{m: pooled(res, m, "base") for m in ("UA", "IRA", "CRA")},
                         "FD": 0.0, "train_s": None, "s_per_it": None, "peak_MiB": None, "tensors": 0,
                         "parameters": 0, "checkpoint": None, **robustness(None, attacks, collateral, args.concept),
                         "twin_dist": 1.0 if twin else None})
        rows.append({"method": name, **{m: pooled(res, m) for m in ("UA", "IRA", "CRA")},
                     "FD": res["retain_fd"], "train_s": sum(meta.get(k, 0) for k in COST_KEYS),
                     "s_per_it": meta.get("seconds_per_iteration"), "peak_MiB": meta.get("peak_memory_mb"),
                     "fe_per_it": meta.get("forward_equivalents_per_iteration"),
                     "tensors": meta.get("tensors_changed"), "parameters": meta.get("parameters_changed"),
                     "iterations": meta.get("iterations_done"), "file": os.path.relpath(path), "checkpoint": how,
                     **robustness(path, attacks, collateral, args.concept), **twin_columns(path, twin)})
        state.print(f"{name}: UA {rows[-1]['UA']:.3f} IRA {rows[-1]['IRA']:.3f} CRA {rows[-1]['CRA']:.3f} "
                    f"FD {rows[-1]['FD']:.3f}")
    if not state.is_main_process:     # every process holds every number; the main one writes
        return 0
    machine = machine_name()
    report = {"concept": args.concept, "base_model": describe(pipe), "judge": judge.name, "seed": args.seed,
              "tests": len(res["rows"]), "images_per_test": args.images_per_test, "machine": machine,
              "seconds": round(time.time() - t0), "rows": rows}
    write_json(os.path.splitext(args.output)[0] + ".json", report)
    cols = ["method", "UA", "IRA", "CRA", "FD", *TWIN_COLUMNS, *ROBUSTNESS, "train_s", "fe_per_it", "s_per_it",
            "peak_MiB", "tensors", "parameters", "checkpoint"]
    table = markdown_table([{**r, "parameters": f"{r['parameters']:,}",
                             "train_s": None if r["train_s"] is None else f"{r['train_s']:.0f}",
                             "peak_MiB": None if r["peak_MiB"] is None else round(r["peak_MiB"])} for r in rows], cols)
    md = (f"# Benchmark: erasing {args.concept!r}\n\n`python evaluation/benchmark.py` on {machine}, "
          f"{report['seconds']} s in all (training included for methods marked trained). Base: {describe(pipe)}. "
          f"Judge: {judge.name}; {report['tests']} concept-impact tests x {args.images_per_test} seeds.\n\n"
          "UA: share of target images not recognised as the target. IRA: other artists and art styles still "
          "recognised as themselves. CRA: objects and nature scenes whose subject is still recognised. FD: Frechet "
          "distance between the judge's features of base and erased images of every retain prompt (0 = "
          "identical). train_s: training plus x_t bank (and retain bank) seconds, from each file's report (on "
          "the machine that trained it); fe_per_it: UNet forward-equivalents per iteration (x_t warm-up or sampling "
          "included); tensors and parameters: what the erasure file changes. Paints the twin, from "
          f"{'the twin report' if twin else 'no twin report'} (evaluation/twin_evaluation.py: held-out phrasings, "
          "the erased model on the prompt against the base model on its neutral twin, same seed): twin_dist, the "
          "paired pixel distance (0 = the twin, 1 = no erasure); twin_FDx, the Frechet distance over the base "
          "model's seed spread; twin_subj, subject kept over the twins'; twin_excess, the largest share a style "
          "takes beyond the twins'. Robustness, "
          f"from {'the attack report' if attacks else 'no attack report'} and "
          f"{'the collateral report' if collateral else 'no collateral report'} (n/a: file not evaluated there): "
          "coll_style, the lowest other style's rate on unseen phrasings; coll_photo, photo's; coll_subj, subjects "
          "kept; ASR_none, the attack success rate before any attack; ASR_prompt, the largest over the prompt "
          "attacks; ASR_CI, Concept Inversion; ASR_soft, the soft-prompt attack; ASR_worst, the largest.\n\n" + table)
    atomic_write_text(args.output, md)
    print(table)
    print(f"wrote {args.output} and {os.path.splitext(args.output)[0]}.json in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
