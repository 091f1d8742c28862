"""Does the erasure hold? Attack success rate (ASR) of prompt attacks, Concept Inversion and a
soft-prompt attack, for the base model and each erasure file, and what each erased model paints instead.

    python evaluation/attack_evaluation.py                  # Van Gogh: base + the bundled ESD-x and grid files
    python evaluation/attack_evaluation.py --concept "Claude Monet" --erasures FILE [FILE ...]
    python evaluation/attack_evaluation.py --attacks none inversion --inversion_steps 300

ASR is the share of attacked generations the judge (toy model: the bundled classifier; real SD:
CLIP zero-shot, --clip_model) assigns to the concept. Attacks (spatial_erasure.attacks, documented
in prompts/README.md): none (the concept prompts, ASR before any attack), paraphrase, misspelling,
famous_work, mixed, split (fixed prompt sets), inversion (Concept Inversion: one token learned on
the model from base-model images of the concept), soft_prompt (k adversarial embeddings prepended
to concept prompts, UnlearnDiffAtk-style, reported continuous and projected to vocabulary tokens).
With `--soft_prompt_on neutral` the soft-prompt attack starts from the neutral twin instead (no
concept word in the prompt): on the base model this checks that the optimisation finds the concept.

What it paints instead (from the "none" images): the erased model on concept prompts against the
base model on their neutral twins, same seeds: subject kept, the judge's style distribution, the
Frechet distance on the judge's features and the colour / contrast shift, each beside the spread
between two seed sets of the base model on the twins.

Writes attacks.json, attacks.md, asr.png (ASR, attacks x models), inversion.png (ASR over inversion
steps) and examples.png (one image per model and attack) to --output. Fixed-prompt images are
cached and each model's results are saved when it finishes: a rerun resumes at the next model.
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

from spatial_erasure import cli
from spatial_erasure.attacks.inversion import InversionConfig
from spatial_erasure.attacks.prompt_sets import ATTACK_KINDS, misspellings
from spatial_erasure.attacks.soft_prompt import SoftPromptConfig
from spatial_erasure.distributed import machine_name, process_device
from spatial_erasure.erasure_file import file_name_part, names_by_stem, read_erasure, recorded_base
from spatial_erasure.evaluation.attack_suite import ATTACKS, Suite, SuiteConfig
from spatial_erasure.evaluation.metrics import make_judge
from spatial_erasure.families import denoiser_of
from spatial_erasure.learned_tokens import readable
from spatial_erasure.models import BUNDLED_ERASURES, TOY_MODEL, describe, fingerprint, load_pipeline
from spatial_erasure.reports import atomic_write_text, image_grid, markdown_table, save_figure, write_json
from spatial_erasure.sampling import sampling_defaults
from spatial_erasure.toyart.world import ARTISTS
from spatial_erasure.worlds import TOY, world_of

COLUMNS = ["none", *[k for k in ATTACK_KINDS if k != "none"], "inversion", "soft_prompt", "soft_prompt_projected",
           "worst"]


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--erasures", nargs="*", default=None, help="erasure .safetensors files (default: the bundled Van Gogh ESD-x "
      "and scaled grid files, paper and recommended, when --concept is Van Gogh, else none: the base model alone)")
    a("--concept", default="Vincent van Gogh", help="the erased concept (toy model: one of its artists)")
    a("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS), metavar="ATTACK",
      help=cli.choices_help(ATTACKS))
    a("--per_kind", type=int, default=12, help="images per prompt-attack kind")
    a("--pairs", type=int, default=30, help="concept prompts (each with its neutral twin) before any attack")
    a("--pair_seeds", type=int, default=3, help="seeds per concept prompt")
    a("--inversion_steps", type=int, default=200, help="Concept Inversion optimisation steps")
    a("--inversion_lr", type=float, default=3e-3, help="Concept Inversion learning rate (Adam)")
    a("--inversion_vectors", type=int, default=4, help="embeddings behind the learned token (Concept Inversion's "
      "paper: 1, which recovers nothing from the toy ESD-x file; docs/attacks.md)")
    a("--inversion_images", type=int, default=24, help="base-model images of the concept it learns from")
    a("--soft_prompts", type=int, default=6, help="prompts the soft-prompt attack is run on")
    a("--soft_tokens", type=int, default=5, help="adversarial tokens prepended to each prompt")
    a("--soft_steps", type=int, default=40, help="soft-prompt budget per prompt (steps)")
    a("--soft_check_every", type=int, default=10, help="judge one image every N steps; stop at the first success")
    a("--soft_lr", type=float, default=1e-2, help="soft-prompt learning rate (Adam)")
    a("--soft_eval_seeds", type=int, default=4, help="images per attacked prompt for its ASR")
    a("--soft_prompt_on", choices=["concept", "neutral"], default="concept",
      help="concept: prepend to the concept prompt (UnlearnDiffAtk); neutral: to its neutral twin")
    a("--resume", action=argparse.BooleanOptionalAction, default=True,
      help="reuse each model's saved results under the same settings")
    a("--clip_model", default="openai/clip-vit-large-patch14", help="CLIP judge for real SD")
    cli.add_common_args(p, None, "output folder (default: results/attacks/<concept>)", model=None,
                        model_help="base pipeline (default: the one the first erasure file was trained on, else "
                        "the toy model)", seed=0, seed_help="seed of every prompt set and attack", steps=None,
                        guidance=None)
    args = p.parse_args(argv)
    cli.require_positive(vars(args), "per_kind", "pairs", "pair_seeds", "inversion_steps", "inversion_vectors",
                         "inversion_images",
                         "soft_prompts", "soft_tokens", "soft_steps", "soft_check_every", "soft_eval_seeds")
    return args


def asr_figure(rows, path, title):
    """Heatmap of ASR, attacks (columns) x models (rows)."""
    from matplotlib.figure import Figure
    cols = [c for c in COLUMNS if any(c in r["asr"] for r in rows)]
    grid = np.array([[r["asr"].get(c, np.nan) for c in cols] for r in rows], float)
    fig = Figure(figsize=(1.2 + 0.75 * len(cols), 1.0 + 0.45 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn_r")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, fontsize=7, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), [r["model"] for r in rows], fontsize=7)
    ax.set_title(title, fontsize=8)
    save_figure(fig, path)


def inversion_figure(rows, path, title):
    """ASR over Concept Inversion steps, one line per model."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.5, 3.2), layout="constrained")
    ax = fig.subplots()
    for r in rows:
        curve = r.get("inversion", {}).get("curve", [])
        ax.plot([c["step"] for c in curve], [c["asr"] for c in curve], marker="o", label=r["model"])
    ax.set(xlabel="inversion step", ylabel="ASR", ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=6)
    save_figure(fig, path)


def examples_figure(folder, rows, path, title):
    """One image per model (rows) and attack (columns), as saved by the suite."""
    cols = [c for c in COLUMNS if c != "worst" and any(os.path.exists(os.path.join(folder, "examples", r["model"],
                                                                                     f"{c}.png")) for r in rows)]
    blank = np.full((64, 64, 3), 255, np.uint8)
    images = []
    for r in rows:
        for c in cols:
            f = os.path.join(folder, "examples", r["model"], f"{c}.png")
            images.append(np.asarray(Image.open(f).convert("RGB")) if os.path.exists(f) else blank)
    image_grid(np.stack(images).reshape(len(rows), len(cols), *images[0].shape), path,
               row_labels=[r["model"] for r in rows], col_labels=cols, title=title)


def report_markdown(rows, report):
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    cols = [c for c in COLUMNS if any(c in r["asr"] for r in rows)]
    asr = [{"model": r["model"], **{c: fmt(r["asr"].get(c)) for c in cols}} for r in rows]
    sub = [{"model": r["model"], **{k: fmt(r["substitutes"][k]) for k in (
        "subject_kept", "subject_kept_base_twins", "subject_ratio", "fd", "fd_base_seeds", "fd_ratio", "colour_shift",
        "colour_shift_base_seeds", "contrast", "contrast_base_twins")},
        "styles": ", ".join(f"{s} {v:.2f}" for s, v in list(r["substitutes"]["styles"].items())[:3])} for r in rows]
    secs = [{"model": r["model"], **{k: f"{v:.0f}" for k, v in r["seconds"].items()},
             "total": f"{sum(r['seconds'].values()):.0f}"} for r in rows]
    md = [f"# Attacks on the erasure of {report['concept']}\n",
          f"{report['base_model']}; judge: {report['judge']}; {report['steps']} steps, guidance {report['guidance']}; "
          f"{report['machine']}. Command: `{report['command']}`.\n",
          "ASR: share of attacked generations the judge assigns to the concept (none: the concept prompts, before "
          "any attack; worst: the largest over the attacks). inversion: Concept Inversion after its last step; "
          "soft_prompt: continuous embeddings, soft_prompt_projected: the nearest vocabulary tokens.\n",
          markdown_table(asr, ["model", *cols]), "![ASR](asr.png)\n"]
    if any("inversion" in r for r in rows):
        md += ["## Concept Inversion: ASR over steps\n", "![inversion](inversion.png)\n",
               markdown_table([{"model": r["model"], **{f"step {c['step']}": fmt(c["asr"]) for c in
                                                        r["inversion"]["curve"]}, "nearest token":
                                readable(r["inversion"]["nearest"])} for r in rows if "inversion" in r],
                              ["model", *[f"step {c['step']}" for c in rows[0].get("inversion", {}).get("curve", [])],
                               "nearest token"])]
    if any("soft_prompt" in r for r in rows):
        runs = [{"model": r["model"], **x, "projected_prompt": readable(x["projected_prompt"])} for r in rows
                for x in r.get("soft_prompt", {}).get("runs", [])]
        md += ["## Soft-prompt attack per prompt\n",
               markdown_table(runs, ["model", "prompt", "success_step", "asr_continuous", "asr_projected",
                                     "projected_prompt"])]
    md += ["## What the model paints instead of the concept\n",
           "The model on the concept prompts against the base model on their neutral twins (same seeds). "
           "subject_kept / subject_kept_base_twins and their ratio; fd: Frechet distance on the judge's features, "
           "fd_base_seeds: the same between the base model's twins and its twins with other seeds, fd_ratio their "
           "ratio; colour_shift: distance of mean RGB (0-255) from the base twins, beside the base seed spread; "
           "contrast: standard deviation of luminance; styles: the judge's three most frequent styles.\n",
           markdown_table(sub, ["model", "subject_kept", "subject_kept_base_twins", "subject_ratio", "fd",
                                "fd_base_seeds", "fd_ratio", "colour_shift", "colour_shift_base_seeds", "contrast",
                                "contrast_base_twins", "styles"]),
           "## Seconds per attack\n", markdown_table(secs, ["model", *rows[0]["seconds"], "total"]),
           "![examples](examples.png)\n"]
    return "\n".join(md)


def check_concept(concept, world, attacks):
    """A one-line error for a concept the attack sets of the world (worlds.World) cannot be built for."""
    if world is TOY and concept not in ARTISTS:
        cli.fail(f"--concept {concept!r} is not an artist of the toy world; choose one of: {', '.join(ARTISTS)}")
    if "misspelling" in attacks:
        try:
            misspellings(concept)
        except ValueError as e:
            cli.fail(str(e))
    if "famous_work" in attacks and not world.famous_works.get(concept):
        print(f"note: no famous works known for {concept!r}; the famous_work attack is skipped")


@cli.reports_errors
def main(args):
    t_start = time.time()
    vangogh = args.concept == "Vincent van Gogh"
    paths = args.erasures if args.erasures is not None else (BUNDLED_ERASURES if vangogh else [])
    erasures = names_by_stem(paths)
    metas = {name: read_erasure(path)[1] for name, path in erasures.items()}   # a bad file fails now, in one line
    for name, m in metas.items():
        if m.get("concept") and m["concept"] != args.concept:
            print(f"note: {name} erased {m['concept']!r}, attacked here for {args.concept!r}")
    base = args.base_model or (recorded_base(next(iter(metas.values()))) if metas else None)
    pipe = load_pipeline(base or TOY_MODEL, device=process_device(args.device))
    world = world_of(pipe)
    check_concept(args.concept, world, args.attacks)
    have = fingerprint(denoiser_of(pipe))
    for name, m in metas.items():             # fail now, not after hours of attacks on the earlier models
        if m.get("base_fingerprint", have) != have:
            cli.fail(f"{erasures[name]} was trained on {m.get('base_model', '?')}, not on {pipe.name_or_path}; attack "
                     "files of one base model per run (pass --base_model for the others)")
    steps, guidance = sampling_defaults(world, args.num_inference_steps, args.guidance_scale)
    judge = make_judge(pipe, args.concept, args.clip_model)
    out = args.output or os.path.join("results", "attacks", file_name_part(args.concept))
    checks = sorted({0, args.inversion_steps // 4, args.inversion_steps // 2, 3 * args.inversion_steps // 4,
                     args.inversion_steps})
    cfg = SuiteConfig(
        concept=args.concept, attacks=tuple(args.attacks), world=world, per_kind=args.per_kind, pairs=args.pairs,
        pair_seeds=args.pair_seeds, inversion_images=args.inversion_images, soft_prompts=args.soft_prompts,
        soft_on=args.soft_prompt_on, seed=args.seed, steps=steps, guidance=guidance,
        inversion=InversionConfig(steps=args.inversion_steps, lr=args.inversion_lr, vectors=args.inversion_vectors,
                                  check_at=tuple(checks), seed=args.seed),
        soft=SoftPromptConfig(tokens=args.soft_tokens, steps=args.soft_steps, lr=args.soft_lr,
                              check_every=args.soft_check_every, eval_seeds=args.soft_eval_seeds, seed=args.seed))
    print(f"{describe(pipe, have)}\njudge: {judge.name}; models: base, {', '.join(erasures) or '(no erasure files)'}")
    suite = Suite(pipe, judge, cfg, out)
    rows = [suite.run("base", resume=args.resume)]
    rows += [suite.run(name, path, resume=args.resume) for name, path in erasures.items()]
    report = {"concept": args.concept, "base_model": describe(pipe, have), "judge": judge.name, "steps": steps,
              "guidance": guidance, "machine": machine_name(), "seconds": round(time.time() - t_start),
              "command": "python evaluation/attack_evaluation.py " + " ".join(sys.argv[1:]),
              "attacks": {k: ATTACKS[k] for k in args.attacks},
              "erasures": {n: {"path": p, **{k: metas[n].get(k) for k in ("method", "concept")}}
                           for n, p in erasures.items()}, "args": vars(args), "models": rows}
    write_json(os.path.join(out, "attacks.json"), report)
    title = f"ASR, concept {args.concept}"
    asr_figure(rows, os.path.join(out, "asr.png"), title)
    if "inversion" in args.attacks:
        inversion_figure(rows, os.path.join(out, "inversion.png"), f"Concept Inversion, {args.concept}")
    examples_figure(out, rows, os.path.join(out, "examples.png"), f"one image per attack, {args.concept}")
    atomic_write_text(os.path.join(out, "attacks.md"), report_markdown(rows, report))
    cols = [c for c in COLUMNS if any(c in r["asr"] for r in rows)]
    print(markdown_table([{"model": r["model"], **{c: f"{r['asr'][c]:.2f}" for c in cols if c in r["asr"]}}
                          for r in rows], ["model", *cols]))
    print(f"wrote {out}/attacks.json, attacks.md, asr.png in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
