"""Inpainting erasure: erase a concept inside spatial masks, training cross-attention only.

Per iteration (`objectives.grid_erasure_loss`): a case (prompt variation p with its neutral twin
p0, mask M from the G x G grid plus centre) and a step k. x_t is the state after k guided steps of
the frozen model inpainting M on the source image of p0 (generated once) with prompt p: the
blended loop for a 4-channel UNet, cat(x_t, mask, masked-image latent) for a 9-channel inpainting
UNet. A retain prompt r (another artist or style) is inpainted the same way, from its own
trajectory (`--retain_xt own`), giving x_t^r. One teacher call gives eps(p0), eps(p), eps("") at
x_t and eps(r) at x_t^r; the student sees p and r. Loss:

    inside M:   MSE(student(p), eps(p0) - negative_guidance * (eps(p) - eps("")))
  + outside_weight * outside M: MSE(student(p), eps(p))
  + retain_weight * MSE(student(r, x_t^r), eps(r, x_t^r))

`--global_share` adds cases whose mask is the whole image: plain text-to-image states, ESD's case,
where the retain term also sees global generation. On the toy model it did not improve global
subject retention (docs/results.md), so the default 0 keeps the paper's 10-mask set exactly.

`--concept "A;B;C"` (or a CSV with a concept column) erases several concepts in one run: each
gets --num_prompts variations, the cases are every (variation, mask) over all of them, and one x_t
source serves them all. `--preserve N` adds N anchor prompts (`anchors.anchor_prompts`) to the
retain term's pool: half the cases (`ANCHOR_SHARE`) take an anchor as their retain prompt, the
other half another artist or style as before.

`--target twin` maps the concept onto its twin inside the mask instead: x_t from the twin's own
inpainting trajectories, the student regressed onto eps(x_t, p0) inside M, with "" kept.

Recipes (`--recipe`, spatial_erasure.recipes) set the method: `paper` the one above as first
published (x_t sampled; a cached bank for scaled), `recommended` (the default) the twin target on
streams with the key/value penalty of 200 anchors. Presets (`--preset`) set prompts x iterations;
any flag overrides both. `main` builds the cases (prompts x masks), then their sources (source images,
x_t trajectories), both in `grid_cases`, then trains.
"""
import argparse
import os
from dataclasses import replace

from . import adversarial, cli, recipes, training_flags
from .anchors import key_value_penalty
from .configs import GridConfig
from .distributed import process_state
from .erasure_file import file_name_part, training_metadata
from .errors import InputError
from .files import OutputLock
from .grid_cases import ANCHOR_SHARE, build_cases, build_sources, concepts_of
from .models import MODELS_DIR
from .objectives import grid_erasure_loss
from .prompts import parse_concepts, write_prompt_csv
from .reports import loss_curve
from .trainer import forward_equivalents, originals, resolution, seed_everything, train

# xt_source stream: trajectories alive per source (concept, retain); 4 and 8 lost Warhol (docs/real_size.md)
STREAM_WIDTH = 16
RETAIN_XT = {"own": "the retain prompt's own inpainting trajectories (a second bank of --retain_bank_size, or "
                    "sampled per iteration)",
             "concept": "the concept's x_t (no extra cost; the retain term then guards only states the concept "
                        "visits)"}
RETAIN_REGIONS = {"image": "the whole latent, as first published",
                  "mask": "inside the retain row's own mask only, where the inpainting paints"}
TARGETS = {"esd": "x_t from the concept prompt's own inpainting trajectories, ESD's target inside the mask (the "
                  "paper's)",
           "twin": "x_t from the neutral twin's own inpainting trajectories, the twin's prediction inside the mask "
                   "(minus --negative_guidance times what the concept adds), \"\" kept"}
DIRECTIONS = {"null": "eps(p) - eps(\"\"), the paper's (the concept and the subject: subjects suffer)",
              "twin": "eps(p) - eps(p0), what the concept adds to its neutral twin (the subject stays)"}


def build_parser(preset_default="efficient"):
    toy, sd = recipes.GRID_FAMILY["toy"], recipes.GRID_FAMILY["sd"]
    p = cli.parser(__doc__)
    p.add_argument("--preset", default=preset_default, choices=list(recipes.PRESETS),
                   help="; ".join(f"{k}: {v['num_prompts']} prompts x {v['iterations']} iterations" for k, v in
                                  recipes.PRESETS.items()) + " (a recipe may set its own iterations)")
    concept = p.add_argument_group("concept and prompts")
    concept.add_argument("--concept", default="Vincent van Gogh", help="artist or style to erase; several at once as "
                         "'A;B;C' or a CSV file with a concept column (no erase_from: grid erasure erases each "
                         "concept from its own variations)")
    concept.add_argument("--num_prompts", type=int, help="prompt variations per concept (cases: concepts x prompts x "
                         "masks); preset")
    cli.add_model_arg(p.add_argument_group("model"), help="SD 1.x/2.x or SD-inpainting hub id or folder")
    masks = p.add_argument_group("masks")
    masks.add_argument("--grid", type=int, default=3, help="G: the G x G grid of masks")
    masks.add_argument("--center", action=argparse.BooleanOptionalAction, default=True, help="add the centre mask")
    masks.add_argument("--global_share", type=float, default=0.0,
                       help="share of cases whose mask is the whole image (text-to-image states; 0: grid masks only)")
    m = training_flags.add_recipe_arg(p, "grid")
    m.add_argument("--target", default=None, choices=list(TARGETS), help=cli.choices_help(TARGETS) + "; recipe")
    m.add_argument("--null_weight", type=float, default=1.0, help="--target twin: weight of keeping eps(x_t, \"\")")
    m.add_argument("--direction", default=None, choices=list(DIRECTIONS), help="what ESD's target steers away from: "
                   + cli.choices_help(DIRECTIONS) + "; recipe")
    keep = p.add_argument_group("preservation", "what the erasure must leave as it was; --preserve is set by --recipe")
    keep.add_argument("--outside_weight", type=float, help="weight of keeping the concept prediction outside the mask "
                      f"(default: {toy['outside_weight']})")
    keep.add_argument("--retain_weight", type=float,
                      help=f"weight of the retain-prompt term (default: {toy['retain_weight']})")
    keep.add_argument("--retain_templates", type=int, help="phrasings of each retain artist or style (the first N "
                      "of the model family's templates; default: as first published, "
                      f"{toy['retain_templates']} on the toy model and {recipes.GRID_FAMILY['sd']['retain_templates']} "
                      "on real SD)")
    keep.add_argument("--retain_region", default="image", choices=list(RETAIN_REGIONS),
                      help="where the retain term keeps the frozen prediction: " + cli.choices_help(RETAIN_REGIONS))
    keep.add_argument("--retain_xt", default="own", choices=list(RETAIN_XT),
                      help="x_t of the retain term: " + cli.choices_help(RETAIN_XT))
    keep.add_argument("--retain_bank_size", type=int,
                      help="retain trajectories in their bank (cache/noise, --retain_xt own); preset")
    training_flags.add_preservation_args(keep, f"the anchors join the retain term's pool, the retain prompt of "
                                         f"{100 * ANCHOR_SHARE:.0f}%% of the cases (--retain_xt concept: drawn "
                                         "uniformly from the pool), their rows weighted by this times --retain_weight")
    training_flags.add_robust_args(p.add_argument_group("robustness", "adversarial erasure; set by --recipe"))
    training_flags.add_training_args(p.add_argument_group("training"), iterations=None, xt_source=None, bank_size=None,
                                     stream_width=STREAM_WIDTH, guidance_scale=3.0, batch_help="cases per iteration",
                                     lr_help=f"model family's: {toy['lr']} toy model, "
                                             f"{recipes.PRESET_LR['toy', 'scaled']} with the scaled preset; "
                                             f"{sd['lr']} real SD",
                                     eta_help=f"recipe, else the model family's: {toy['negative_guidance']} toy model, "
                                              f"{sd['negative_guidance']} real SD",
                                     seed_help="seeds prompts, source images, x_t noise and sampling")
    training_flags.add_runtime_args(p.add_argument_group("runtime", "how (not what) it trains"))
    out = p.add_argument_group("output")
    cli.add_output_arg(out, None, "erasure file to write (default: models/grid-{concept}-{preset}-{method}"
                       ".safetensors); the JSON report, prompts CSV and loss PNG go beside it")
    training_flags.add_config_args(out)
    return p


def parse_args(argv=None, preset_default="efficient"):
    """The command line as a checked GridConfig (the recipe's and preset's settings filled in, what depends on
    the model family still None); a flag that would fail later ends the run here with one line naming the fix."""
    flags = vars(training_flags.parse(build_parser(preset_default), argv))
    cfg = GridConfig.of(recipes.resolve(flags, "grid"))
    cli.require_positive(flags, "num_prompts", "iterations", "bank_size", "retain_bank_size", "retain_templates",
                         "grid", "batch_size", "stream_width", "num_inference_steps")
    training_flags.check_training_args(cfg)
    training_flags.check_preservation_args(cfg)
    try:
        pairs = parse_concepts(cfg.concept)
    except InputError as e:
        cli.fail(str(e).replace("--erase_concept", "--concept"))
    if any(f for _, f in pairs):
        cli.fail(f"--concept {cfg.concept}: grid erasure takes no erase_from (it erases each concept from its own "
                 "prompt variations); drop the erase_from column")
    cfg = training_flags.preservation_defaults(cfg, len(pairs))
    if cfg.preserve_weight and cfg.retain_weight == 0:
        cli.fail("--preserve_weight puts anchors in the retain term, which --retain_weight 0 turns off; pass "
                 "--preserve_weight 0 (the key/value penalty alone) or a retain weight")
    if not 0 <= cfg.global_share < 1:
        cli.fail(f"--global_share must be in [0, 1), got {cfg.global_share}; pass e.g. 0.1 (or 0 for grid masks only)")
    if cfg.output is not None and not cfg.output.endswith(".safetensors"):
        cli.fail(f"--output {cfg.output} must end in .safetensors (the erasure file); reports go beside it")
    training_flags.check_output(cfg.output or default_output(cfg), cfg)
    training_flags.print_config(cfg)
    return cfg


def default_output(cfg):
    """models/grid-{concept}-{preset}-{method}[-{recipe}].safetensors (the recipe named unless paper);
    several concepts joined by +."""
    what = "+".join(file_name_part(c) for c in concepts_of(cfg))
    name = f"grid-{what}-{cfg.preset}-{cfg.train_method}" + (f"-{cfg.recipe}" if cfg.recipe != "paper" else "") \
        + ".safetensors"
    return os.path.join(MODELS_DIR, name)


def report_extras(cfg, cases, sources, parts, unet, adversary=None):
    """What the training report adds for grid erasure: x_t cost, cases, prompts, masks, loss parts
    [, the inner attack's steps and losses (--robust)]."""
    c = sources.concept.cost()
    rc = sources.retain.cost() if sources.retain is not None else {}
    retain_null = sources.retain is not None and sources.retain.streams     # one more teacher row
    b, last = cfg.batch_size, parts[-50:]
    n_retain, anchor_cases = len(cases.retain) - cases.n_anchors, cases.anchor_cases()
    return {**c, **{"retain_" + k: v for k, v in rc.items() if k != "xt_source"}, "retain_xt": cfg.retain_xt,
            **forward_equivalents(c["sampling_forwards"] + rc.get("sampling_forwards", 0), cfg.iterations,
                                  teacher_rows=(4 + retain_null) * b,
                                  student_rows=(2 + (cfg.target == "twin" and cfg.null_weight > 0)
                                                + bool(adversary)) * b,
                                  rows=b,
                                  checkpointing=cfg.gradient_checkpointing,
                                  attack_rows=adversary.attack_rows(b) if adversary else 0),
            **(adversary.report() if adversary else {}),
            "source_images": len(cases.rows), "source_forwards": 2 * cfg.num_inference_steps * len(cases.rows),
            "source_seconds": round(sources.source_seconds, 2),
            "concepts": cases.concepts,
            "prompts": [{k: r[k] for k in ("concept", "prompt", "neutral", "evaluation_seed") if k in r}
                        for r in cases.rows],
            "retain_prompts": cases.retain[:n_retain], "anchor_prompts": cases.retain[n_retain:],
            "anchors": cases.n_anchors, "anchor_cases": int(anchor_cases.sum()),
            "anchors_used": len(set(cases.r_of[anchor_cases].tolist())), "masks": cases.names, "cases": len(cases.v_of),
            "global_cases": cases.n_global, "unet_in_channels": unet.config.in_channels,
            "loss_parts_last50": {k: round(sum(p[k] for p in last) / max(1, len(last)), 6)
                                  for k in ("inside", "outside", "retain", "null", "kv", "adversarial")
                                  if k in parts[-1]}}


@cli.reports_errors
def main(cfg: GridConfig):
    """Train the grid erasure `cfg` describes (parse_args) and write its file and reports."""
    seed_everything(cfg.seed)
    cfg = replace(cfg, output=cfg.output or default_output(cfg))
    lock = OutputLock(cfg.output) if process_state().is_main_process else None   # one run per output
    st = training_flags.prepare(cfg, task="inpaint")
    main_process = st.state.is_main_process
    res, latent = resolution(st.pipe, cfg.resolution)
    cfg = cfg.resolved("grid", training_flags.model_family(st.pipe))     # what depends on the family: lr, eta

    cases = build_cases(st, cfg, res, latent)
    adversary = adversarial.make_adversary(st.pipe, [r["prompt"] for r in cases.rows],
                                           training_flags.adversary_config(cfg))     # before the offload
    st.offload("text_encoder")
    penalty = key_value_penalty(cases.anchors_c, st.params, originals(st), cfg.preserve_kv, cfg.train_method)
    banked = cfg.xt_source in ("cache", "noise")
    own = cfg.retain_weight > 0 and cfg.retain_xt == "own"
    if main_process:
        several = len(cases.concepts) > 1
        print((f"{len(cases.concepts)} concepts ({'; '.join(cases.concepts)}) x {cfg.num_prompts} = " if several
               else "") + f"{len(cases.rows)} prompt variations x {cases.n_masks} masks"
              + (f" + {cases.n_global} whole-image" if cases.n_global else "")
              + f" = {len(cases.v_of)} cases; generating {len(cases.rows)} source images"
              + (f", then a bank of {cfg.bank_size} x_t trajectories" if banked else "")
              + (f" and {cfg.retain_bank_size} retain ones" if own and banked else ""))
        if cases.n_anchors:
            print(f"--preserve: {cases.n_anchors} anchor prompts are the retain prompt of "
                  f"{int(cases.anchor_cases().sum())} of the {len(cases.v_of)} cases")
    sources = build_sources(st, cfg, cases, res, latent)

    parts = []                                     # each iteration's loss terms, for the report

    def loss_fn(it, rng):
        loss, p = grid_erasure_loss(rng, st, cases, sources, cfg.batch_size, cfg.negative_guidance,
                                    cfg.outside_weight, cfg.retain_weight, adversary, cfg.direction, cfg.target,
                                    cfg.null_weight, cfg.retain_region)
        if penalty is not None:
            kv = penalty(st.params)
            loss, p["kv"] = loss + cfg.preserve_kv * kv, kv.item()
        parts.append(p)
        return loss

    out, stem = cfg.output, cfg.output.removesuffix(".safetensors")
    concepts = ";".join(cases.concepts)
    meta = training_metadata(cfg.settings(), st.base_fingerprint, concepts, concepts, res, algorithm="grid-erasure",
                             preset=cfg.preset, **({"concepts": cases.concepts} if len(cases.concepts) > 1 else {}))
    report = train(loss_fn, st, out, cfg.iterations, cfg.lr, meta, seed=cfg.seed,
                   checkpoint_every=cfg.checkpoint_every, resume=cfg.resume and not cfg.restart,
                   desc=f"grid erasure {cfg.preset}", lock=lock,
                   sources=[sources.concept] + ([sources.retain] if sources.retain is not None else []),
                   extra_report=lambda: report_extras(cfg, cases, sources, parts, st.pipe.unet, adversary))
    if not main_process:
        return out
    write_prompt_csv(stem + ".prompts.csv", cases.rows,
                     extra_columns=["neutral"] + (["concept"] if len(cases.concepts) > 1 else []))
    loss_curve(report["losses"], stem + ".loss.png", f"grid erasure of {', '.join(map(repr, cases.concepts))}, "
               f"preset {cfg.preset} ({len(cases.rows)} prompts x {cases.n_masks} masks)")
    print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
          f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
          f"{report['forward_equivalents_per_iteration']:.1f} denoiser forward-equivalents/iteration, x_t "
          + (f"stream warm-up {report['warmup_seconds']} s" if cfg.xt_source == "stream"
             else f"bank {report['bank_seconds']} s ({report['bank_forwards']} forwards)")
          + (f" + retain bank {report['retain_bank_seconds']} s" if report.get("retain_bank_size") else "")
          + f", peak memory {report['peak_memory_mb']:.0f} MiB; "
          f"report {stem}.json, loss curve {stem}.loss.png, prompts {stem}.prompts.csv")
    return out
