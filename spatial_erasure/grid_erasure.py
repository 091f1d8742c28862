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
any flag overrides both. `main`
builds the cases (prompts x masks), then their sources (source images, x_t trajectories), then trains.
"""
import argparse
import os
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from . import adversarial, cli, recipes, training_flags
from .anchors import anchor_prompts, key_value_penalty
from .configs import GridConfig
from .distributed import process_state
from .erasure_file import file_name_part, training_metadata
from .errors import InputError
from .files import OutputLock
from .masks import grid_masks, mask_names, to_latent
from .models import MODELS_DIR
from .objectives import grid_erasure_loss
from .prompts import Cond, concept_variations, encode, parse_concepts, retain_prompts, write_prompt_csv
from .reports import loss_curve
from .trainer import forward_equivalents, originals, resolution, seed_everything, train
from .trajectories import Inpainting, XtSource, denoise, make_source

# xt_source stream: trajectories alive per source (concept, retain); 4 and 8 lost Warhol (docs/real_size.md)
STREAM_WIDTH = 16
RETAIN_XT = {"own": "the retain prompt's own inpainting trajectories (a second bank of --retain_bank_size, or "
                    "sampled per iteration)",
             "concept": "the concept's x_t (no extra cost; the retain term then guards only states the concept "
                        "visits)"}
TARGETS = {"esd": "x_t from the concept prompt's own inpainting trajectories, ESD's target inside the mask (the "
                  "paper's)",
           "twin": "x_t from the neutral twin's own inpainting trajectories, the twin's prediction inside the mask "
                   "(minus --negative_guidance times what the concept adds), \"\" kept"}
DIRECTIONS = {"null": "eps(p) - eps(\"\"), the paper's (the concept and the subject: subjects suffer)",
              "twin": "eps(p) - eps(p0), what the concept adds to its neutral twin (the subject stays)"}
# --preserve N: the share of cases whose retain prompt is an anchor (the rest keep another artist or style,
# which the toy bars measure); the retain term's cost stays one teacher and one student row per case.
ANCHOR_SHARE = 0.5


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
                      "of the model family's templates; as first published, 1 on the toy model and 2 on real SD); "
                      "recipe")
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
    args = training_flags.parse(build_parser(preset_default), argv)
    recipes.resolve(vars(args), "grid")
    cli.require_positive(args, "num_prompts", "iterations", "bank_size", "retain_bank_size", "retain_templates", "grid",
                         "batch_size",
                         "stream_width", "num_inference_steps")
    training_flags.check_training_args(args)
    training_flags.check_preservation_args(args)
    try:
        pairs = parse_concepts(args.concept)
    except InputError as e:
        cli.fail(str(e).replace("--erase_concept", "--concept"))
    if any(f for _, f in pairs):
        cli.fail(f"--concept {args.concept}: grid erasure takes no erase_from (it erases each concept from its own "
                 "prompt variations); drop the erase_from column")
    training_flags.preservation_defaults(args, len(pairs))
    if args.preserve_weight and args.retain_weight == 0:
        cli.fail("--preserve_weight puts anchors in the retain term, which --retain_weight 0 turns off; pass "
                 "--preserve_weight 0 (the key/value penalty alone) or a retain weight")
    if not 0 <= args.global_share < 1:
        cli.fail(f"--global_share must be in [0, 1), got {args.global_share}; pass e.g. 0.1 (or 0 for grid masks only)")
    if args.output is not None and not args.output.endswith(".safetensors"):
        cli.fail(f"--output {args.output} must end in .safetensors (the erasure file); reports go beside it")
    cli.check_output(args.output or default_output(GridConfig.of(args)))
    training_flags.print_config(args)
    return args


def concepts_of(cfg):
    """The concepts --concept names (parse_concepts: one, 'A;B;C' or a concept CSV)."""
    return [c for c, _ in parse_concepts(cfg.concept)]


def default_output(cfg):
    """models/grid-{concept}-{preset}-{method}[-{recipe}].safetensors (the recipe named unless paper);
    several concepts joined by +."""
    what = "+".join(file_name_part(c) for c in concepts_of(cfg))
    name = f"grid-{what}-{cfg.preset}-{cfg.train_method}" + (f"-{cfg.recipe}" if cfg.recipe != "paper" else "") \
        + ".safetensors"
    return os.path.join(MODELS_DIR, name)


@dataclass
class GridCases:
    """The training cases: every (prompt variation, grid mask) pair, then the whole-image cases."""
    concepts: list          # the erased concepts
    rows: list              # the V prompt variations {case_number, prompt, neutral, evaluation_seed[, concept]}
    concept: Cond           # (V,) each variation's prompt p
    neutral: Cond           # (V,) its neutral twin p0
    null: Cond              # (1,) ""
    retain: list            # the R retain prompts: other artists and styles, then the A anchors (--preserve)
    n_anchors: int          # A
    retain_c: Cond          # (R,)
    pix: torch.Tensor       # (M [+1], 1, res, res) the masks, the whole image last when there are global cases
    lat: torch.Tensor       # (M [+1], 1, h, w) the same at latent size
    names: list             # mask names
    v_of: torch.Tensor      # (C,) each case's variation
    m_of: torch.Tensor      # (C,) its mask
    r_of: torch.Tensor      # (C,) its retain prompt
    n_masks: int            # M, the grid masks
    n_global: int           # whole-image cases
    anchors_c: Cond = None  # every anchor, for the key/value penalty (--preserve_kv)
    retain_w: torch.Tensor = None   # (R,) each retain prompt's row weight (--preserve_weight of anchors; None: all 1)

    def anchor_cases(self):
        """(C,) True where a case's retain prompt is an anchor (--preserve)."""
        return self.r_of >= len(self.retain) - self.n_anchors


@dataclass
class GridSources:
    """Where each case's x_t comes from: its inpainting inputs and the trajectories on them."""
    inpainting: Inpainting  # (C,) source-image latent z0, latent mask [and masked-image latent: 9 channels]
    concept: XtSource       # x_t of each case's prompt p
    retain: XtSource        # x_t of its retain prompt r (--retain_xt own), else None: the retain term uses x_t
    source_seconds: float   # generating the source images


def retain_draws(n_cases, n_retain, n_anchors, seed):
    """(C,) each case's retain prompt, an index into retain + anchors: uniform over the R retain
    prompts; with anchors, ANCHOR_SHARE of the cases (chosen at random) take one instead, every
    anchor once before any repeats."""
    rng = np.random.default_rng(seed)
    r_of = rng.integers(0, n_retain, n_cases)
    if n_anchors:
        picked = rng.permutation(n_cases)[:round(ANCHOR_SHARE * n_cases)]
        r_of[picked] = n_retain + rng.permutation(np.arange(len(picked)) % n_anchors)
    return torch.as_tensor(r_of)


def build_cases(st, cfg, res, latent):
    """Prompt variations of every concept (main writes them to the prompts CSV) x masks, retain prompts and
    anchors, all encoded once."""
    pipe, toy = st.pipe, training_flags.model_family(st.pipe) == "toy"
    concepts = concepts_of(cfg)
    # --num_prompts per concept; concept j's variations drawn with seed + j (its own phrasing order and
    # source images; one concept: as before), numbered across all concepts
    rows = [{**r, **({"concept": c} if len(concepts) > 1 else {})}
            for j, c in enumerate(concepts) for r in concept_variations(c, cfg.num_prompts, toy, cfg.seed + j)]
    rows = [{**r, "case_number": i} for i, r in enumerate(rows)]
    anchors = anchor_prompts(cfg.preserve, cfg.seed, exclude=concepts) if cfg.preserve else []
    pooled = anchors if cfg.preserve_weight else []           # the anchors with rows in the retain term
    retain = retain_prompts(concepts, toy, cfg.retain_templates) + pooled
    concept = encode(pipe, [r["prompt"] for r in rows], res)
    neutral = encode(pipe, [r["neutral"] for r in rows], res)
    null, retain_c = encode(pipe, [""], res), encode(pipe, retain, res)
    anchors_c = encode(pipe, anchors, res) if cfg.preserve_kv else None
    retain_w = torch.tensor([1.0] * (len(retain) - len(pooled)) + [cfg.preserve_weight] * len(pooled)) \
        if pooled and cfg.preserve_weight != 1 else None
    pix = grid_masks(res, cfg.grid, cfg.center)                          # (M, 1, res, res)
    names, n_masks = mask_names(cfg.grid, cfg.center), len(pix)
    # cases: every (prompt variation, grid mask) pair, then the whole-image cases (mask index M)
    v_of = torch.arange(len(rows)).repeat_interleave(n_masks)
    m_of = torch.arange(n_masks).repeat(len(rows))
    n_global = round(cfg.global_share / (1 - cfg.global_share) * len(v_of))
    if n_global:
        pix, names = torch.cat([pix, torch.ones_like(pix[:1])]), names + ["whole image"]
        v_of = torch.cat([v_of, torch.arange(n_global) % len(rows)])
        m_of = torch.cat([m_of, torch.full((n_global,), n_masks)])
    lat = to_latent(pix, latent[-1]).to(st.device, st.dtype)               # (M [+1], 1, h, w)
    r_of = retain_draws(len(v_of), len(retain) - len(pooled), len(pooled), cfg.seed + 1)   # retain prompt
    return GridCases(concepts, rows, concept, neutral, null, retain, len(pooled), retain_c, pix, lat, names, v_of,
                     m_of, r_of, n_masks, n_global, anchors_c, retain_w)


@torch.no_grad()
def masked_latents(vae, z0, images_of, pixel_masks, chunk=32):
    """Latents of each case's image with its mask region blanked (0 in [-1, 1], as diffusers does).
    z0 (V, 4, h, w) is decoded once per image; `images_of` (C,) picks each case's image."""
    s = vae.config.scaling_factor
    images = torch.cat([vae.decode(z0[i:i + chunk] / s).sample for i in range(0, len(z0), chunk)])
    out = []
    for i in range(0, len(images_of), chunk):
        m = pixel_masks[i:i + chunk].to(images.dtype)
        out.append(vae.encode(images[images_of[i:i + chunk]] * (m < 0.5)).latent_dist.mode() * s)
    return torch.cat(out)


@torch.no_grad()
def source_latents(st, neutral, null, seeds, res, latent, n_steps, guidance, chunk=32):
    """The image each neutral twin inpaints into: generated once by the frozen model from its seed
    (a 9-channel UNet generates with the whole image masked)."""
    pipe, out = st.pipe, []
    blank = None
    if pipe.unet.config.in_channels == 9:          # the latent of a grey image, the "masked image" of every case
        grey = torch.zeros(1, 3, res, res, device=st.device, dtype=st.dtype)
        blank = pipe.vae.encode(grey).latent_dist.mode() * pipe.vae.config.scaling_factor
    for i in tqdm(range(0, len(seeds), chunk), desc="source images", unit="chunk", leave=False):
        s = seeds[i:i + chunk]
        noise = torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(int(x))) for x in s])
        noise = noise.to(st.device, st.dtype)
        inpaint = None
        if blank is not None:
            ones = torch.ones(len(s), 1, *latent[1:], device=st.device, dtype=st.dtype)
            inpaint = Inpainting(torch.zeros_like(noise), ones, blank.repeat(len(s), 1, 1, 1))
        out.append(denoise(st.teacher_unet, pipe.scheduler, noise, neutral[i:i + chunk], null.repeat(len(s)), guidance,
                           n_steps, n_steps, st.teacher_params, inpaint=inpaint))
    return torch.cat(out)


def build_sources(st, cfg, cases, res, latent):
    """Source images (generated once), each case's inpainting inputs, and the x_t trajectories of the
    concept prompts and (--retain_xt own) of the retain prompts: a bank, or a stream's warm-up."""
    pipe = st.pipe
    nine = pipe.unet.config.in_channels == 9
    own = cfg.retain_weight > 0 and cfg.retain_xt == "own"
    start = time.time()
    with st.autocast():
        z0 = source_latents(st, cases.neutral, cases.null, [r["evaluation_seed"] for r in cases.rows], res, latent,
                            cfg.num_inference_steps, cfg.guidance_scale)
        inpainting = Inpainting(z0[cases.v_of], cases.lat[cases.m_of],
                                masked_latents(pipe.vae, z0, cases.v_of, cases.pix[cases.m_of].to(st.device))
                                if nine else None)
        st.offload("vae")
        source_seconds = time.time() - start
        common = dict(params=st.teacher_params, width=cfg.stream_width, device=st.device, dtype=st.dtype,
                      inpaint=inpainting)
        prompts = cases.neutral if cfg.target == "twin" else cases.concept     # whose trajectories x_t follows
        concept = make_source(cfg.xt_source, st.teacher_unet, pipe.scheduler, prompts[cases.v_of], cases.null,
                              cfg.guidance_scale, cfg.num_inference_steps, latent, bank_size=cfg.bank_size,
                              seed=st.process_seed(cfg.seed), desc="x_t", **common)
        # the retain prompt r_of[c] inpainting case c's image and mask, from its own trajectory
        retain = make_source(cfg.xt_source, st.teacher_unet, pipe.scheduler, cases.retain_c[cases.r_of], cases.null,
                             cfg.guidance_scale, cfg.num_inference_steps, latent, bank_size=cfg.retain_bank_size,
                             seed=st.process_seed(cfg.seed + 1), desc="retain x_t", **common) if own else None
    return GridSources(inpainting, concept, retain, source_seconds)


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
def main(args):
    cfg = GridConfig.of(args)                      # the parsed flags, typed; below here no namespace
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
                                    cfg.null_weight)
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
          f"{report['forward_equivalents_per_iteration']:.1f} UNet forward-equivalents/iteration, x_t "
          + (f"stream warm-up {report['warmup_seconds']} s" if cfg.xt_source == "stream"
             else f"bank {report['bank_seconds']} s ({report['bank_forwards']} forwards)")
          + (f" + retain bank {report['retain_bank_seconds']} s" if report.get("retain_bank_size") else "")
          + f", peak memory {report['peak_memory_mb']:.0f} MiB; "
          f"report {stem}.json, loss curve {stem}.loss.png, prompts {stem}.prompts.csv")
    return out
