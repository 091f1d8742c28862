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

Presets (`--preset`) set prompts x iterations and the x_t source; any flag overrides them. `main`
builds the cases (prompts x masks), then their sources (source images, x_t trajectories), then trains.
"""
import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from . import cli
from .erasure_file import file_name_part, training_metadata
from .masks import grid_masks, mask_names, to_latent
from .models import MODELS_DIR
from .objectives import grid_erasure_loss
from .prompts import Cond, concept_variations, encode, retain_prompts, write_prompt_csv
from .reports import loss_curve
from .trainer import forward_equivalents, prepare_from_args, resolution, seed_everything, train
from .trajectories import Inpainting, XtSource, denoise, make_source

PRESETS = {
    "basic": dict(num_prompts=5, iterations=10, xt_source="stream", bank_size=16, retain_bank_size=4),
    "efficient": dict(num_prompts=20, iterations=100, xt_source="stream", bank_size=64, retain_bank_size=16),
    "scaled": dict(num_prompts=100, iterations=500, xt_source="stream", bank_size=256, retain_bank_size=64),
}
# xt_source stream: trajectories alive per source (concept, retain); 4 and 8 lost Warhol (docs/real_size.md)
STREAM_WIDTH = 16
RETAIN_XT = {"own": "the retain prompt's own inpainting trajectories (a second bank of --retain_bank_size, or "
                    "sampled per iteration)",
             "concept": "the concept's x_t (no extra cost; the retain term then guards only states the concept "
                        "visits)"}
# Defaults by model family (cli.model_family; SDXL takes SD's): the toy model's were measured (docs/results.md),
# for real SD they are ESD's reference values.
DEFAULTS = {"toy": dict(lr=7e-4, negative_guidance=4.0, outside_weight=1.0, retain_weight=1.0),
            "sd": dict(lr=5e-5, negative_guidance=2.0, outside_weight=1.0, retain_weight=1.0)}
# The scaled preset's 500 iterations are 2.5x ESD-x's 200: at 7e-4 they overshoot (subjects 62%), so 3e-4
# (docs/results.md).
TOY_PRESET_LR = {"scaled": 3e-4}


def build_parser(preset_default="efficient"):
    toy, sd = DEFAULTS["toy"], DEFAULTS["sd"]
    p = cli.parser(__doc__)
    a = p.add_argument
    a("--preset", default=preset_default, choices=list(PRESETS),
      help="; ".join(f"{k}: {v['num_prompts']} prompts x {v['iterations']} iterations, xt_source {v['xt_source']}"
                     for k, v in PRESETS.items()))
    a("--concept", default="Vincent van Gogh", help="artist or style to erase")
    cli.add_model_arg(p, help="SD 1.x/2.x or SD-inpainting hub id or folder")
    a("--grid", type=int, default=3, help="G: the G x G grid of masks")
    a("--center", action=argparse.BooleanOptionalAction, default=True, help="add the centre mask")
    a("--global_share", type=float, default=0.0,
      help="share of cases whose mask is the whole image (text-to-image states; 0: grid masks only)")
    a("--num_prompts", type=int, help="prompt variations (cases: prompts x masks); preset")
    a("--outside_weight", type=float,
      help=f"weight of keeping the concept prediction outside the mask (default: {toy['outside_weight']})")
    a("--retain_weight", type=float, help=f"weight of the retain-prompt term (default: {toy['retain_weight']})")
    a("--retain_xt", default="own", choices=list(RETAIN_XT),
      help="x_t of the retain term: " + cli.choices_help(RETAIN_XT))
    a("--retain_bank_size", type=int, help="retain trajectories in their bank (cache/noise, --retain_xt own); preset")
    cli.add_training_args(p, iterations=None, xt_source=None, bank_size=None, stream_width=STREAM_WIDTH,
                          guidance_scale=3.0, batch_help="cases per iteration",
                          lr_help=f"default: {toy['lr']} toy model, {TOY_PRESET_LR['scaled']} with the scaled "
                                  f"preset; {sd['lr']} real SD",
                          eta_help=f"default: {toy['negative_guidance']} toy model, {sd['negative_guidance']} real SD",
                          seed_help="seeds prompts, source images, x_t noise and sampling")
    cli.add_output_arg(p, None, "erasure file to write (default: models/grid-{concept}-{preset}-{method}.safetensors); "
                       "the JSON report, prompts CSV and loss PNG go beside it")
    return p


def parse_args(argv=None, preset_default="efficient"):
    args = build_parser(preset_default).parse_args(argv)
    cli.fill_defaults(args, PRESETS[args.preset])
    cli.require_positive(args, "num_prompts", "iterations", "bank_size", "retain_bank_size", "grid", "batch_size",
                         "stream_width", "num_inference_steps")
    if not 0 <= args.global_share < 1:
        cli.fail(f"--global_share must be in [0, 1), got {args.global_share}; pass e.g. 0.1 (or 0 for grid masks only)")
    return args


def family_defaults(preset, family):
    """The model family's lr, negative guidance and loss weights (the toy model's scaled preset: lr 3e-4)."""
    defaults = dict(DEFAULTS.get(family, DEFAULTS["sd"]))
    if family == "toy":
        defaults["lr"] = TOY_PRESET_LR.get(preset, defaults["lr"])
    return defaults


def fill_family_defaults(args, family):
    """The flags left unset take the model family's defaults (cli.model_family: toy, sd, sdxl)."""
    return cli.fill_defaults(args, family_defaults(args.preset, family))


def default_output(args):
    name = f"grid-{file_name_part(args.concept)}-{args.preset}-{args.train_method}.safetensors"
    return os.path.join(MODELS_DIR, name)


@dataclass
class GridCases:
    """The training cases: every (prompt variation, grid mask) pair, then the whole-image cases."""
    rows: list              # the V prompt variations {case_number, prompt, neutral, evaluation_seed}
    concept: Cond           # (V,) each variation's prompt p
    neutral: Cond           # (V,) its neutral twin p0
    null: Cond              # (1,) ""
    retain: list            # the R retain prompts (other artists and styles)
    retain_c: Cond          # (R,)
    pix: torch.Tensor       # (M [+1], 1, res, res) the masks, the whole image last when there are global cases
    lat: torch.Tensor       # (M [+1], 1, h, w) the same at latent size
    names: list             # mask names
    v_of: torch.Tensor      # (C,) each case's variation
    m_of: torch.Tensor      # (C,) its mask
    r_of: torch.Tensor      # (C,) its retain prompt
    n_masks: int            # M, the grid masks
    n_global: int           # whole-image cases


@dataclass
class GridSources:
    """Where each case's x_t comes from: its inpainting inputs and the trajectories on them."""
    inpainting: Inpainting  # (C,) source-image latent z0, latent mask [and masked-image latent: 9 channels]
    concept: XtSource       # x_t of each case's prompt p
    retain: XtSource        # x_t of its retain prompt r (--retain_xt own), else None: the retain term uses x_t
    source_seconds: float   # generating the source images


def build_cases(st, args, res, latent):
    """Prompt variations (written to the prompts CSV) x masks, retain prompts, all encoded once."""
    pipe, toy = st.pipe, cli.model_family(st.pipe) == "toy"
    rows = concept_variations(args.concept, args.num_prompts, toy, args.seed)
    if st.state.is_main_process:
        write_prompt_csv(args.output.removesuffix(".safetensors") + ".prompts.csv", rows, extra_columns=["neutral"])
    retain = retain_prompts(args.concept, toy)
    concept = encode(pipe, [r["prompt"] for r in rows], res)
    neutral = encode(pipe, [r["neutral"] for r in rows], res)
    null, retain_c = encode(pipe, [""], res), encode(pipe, retain, res)
    st.offload("text_encoder")
    pix = grid_masks(res, args.grid, args.center)                          # (M, 1, res, res)
    names, n_masks = mask_names(args.grid, args.center), len(pix)
    # cases: every (prompt variation, grid mask) pair, then the whole-image cases (mask index M)
    v_of = torch.arange(len(rows)).repeat_interleave(n_masks)
    m_of = torch.arange(n_masks).repeat(len(rows))
    n_global = round(args.global_share / (1 - args.global_share) * len(v_of))
    if n_global:
        pix, names = torch.cat([pix, torch.ones_like(pix[:1])]), names + ["whole image"]
        v_of = torch.cat([v_of, torch.arange(n_global) % len(rows)])
        m_of = torch.cat([m_of, torch.full((n_global,), n_masks)])
    lat = to_latent(pix, latent[-1]).to(st.device, st.dtype)               # (M [+1], 1, h, w)
    r_of = torch.as_tensor(np.random.default_rng(args.seed + 1).integers(0, len(retain), len(v_of)))  # retain prompt
    return GridCases(rows, concept, neutral, null, retain, retain_c, pix, lat, names, v_of, m_of, r_of, n_masks,
                     n_global)


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


def build_sources(st, args, cases, res, latent):
    """Source images (generated once), each case's inpainting inputs, and the x_t trajectories of the
    concept prompts and (--retain_xt own) of the retain prompts: a bank, or a stream's warm-up."""
    pipe = st.pipe
    nine = pipe.unet.config.in_channels == 9
    own = args.retain_weight > 0 and args.retain_xt == "own"
    start = time.time()
    with st.autocast():
        z0 = source_latents(st, cases.neutral, cases.null, [r["evaluation_seed"] for r in cases.rows], res, latent,
                            args.num_inference_steps, args.guidance_scale)
        inpainting = Inpainting(z0[cases.v_of], cases.lat[cases.m_of],
                                masked_latents(pipe.vae, z0, cases.v_of, cases.pix[cases.m_of].to(st.device))
                                if nine else None)
        st.offload("vae")
        source_seconds = time.time() - start
        common = dict(params=st.teacher_params, width=args.stream_width, device=st.device, dtype=st.dtype,
                      inpaint=inpainting)
        concept = make_source(args.xt_source, st.teacher_unet, pipe.scheduler, cases.concept[cases.v_of], cases.null,
                              args.guidance_scale, args.num_inference_steps, latent, bank_size=args.bank_size,
                              seed=st.process_seed(args.seed), desc="x_t", **common)
        # the retain prompt r_of[c] inpainting case c's image and mask, from its own trajectory
        retain = make_source(args.xt_source, st.teacher_unet, pipe.scheduler, cases.retain_c[cases.r_of], cases.null,
                             args.guidance_scale, args.num_inference_steps, latent, bank_size=args.retain_bank_size,
                             seed=st.process_seed(args.seed + 1), desc="retain x_t", **common) if own else None
    return GridSources(inpainting, concept, retain, source_seconds)


def report_extras(args, cases, sources, parts, unet):
    """What the training report adds for grid erasure: x_t cost, cases, prompts, masks, loss parts."""
    c = sources.concept.cost()
    rc = sources.retain.cost() if sources.retain is not None else {}
    retain_null = sources.retain is not None and sources.retain.streams     # one more teacher row
    b, last = args.batch_size, parts[-50:]
    return {**c, **{"retain_" + k: v for k, v in rc.items() if k != "xt_source"}, "retain_xt": args.retain_xt,
            **forward_equivalents(c["sampling_forwards"] + rc.get("sampling_forwards", 0), args.iterations,
                                  teacher_rows=(4 + retain_null) * b, student_rows=2 * b, rows=b,
                                  checkpointing=args.gradient_checkpointing),
            "source_images": len(cases.rows), "source_forwards": 2 * args.num_inference_steps * len(cases.rows),
            "source_seconds": round(sources.source_seconds, 2),
            "prompts": [{k: r[k] for k in ("prompt", "neutral", "evaluation_seed")} for r in cases.rows],
            "retain_prompts": cases.retain, "masks": cases.names, "cases": len(cases.v_of),
            "global_cases": cases.n_global, "unet_in_channels": unet.config.in_channels,
            "loss_parts_last50": {k: round(sum(p[k] for p in last) / max(1, len(last)), 6)
                                  for k in ("inside", "outside", "retain")}}


@cli.reports_errors
def main(args):
    seed_everything(args.seed)
    args.output = args.output or default_output(args)
    if not args.output.endswith(".safetensors"):
        cli.fail(f"--output {args.output} must end in .safetensors (the erasure file); reports go beside it")
    st = prepare_from_args(args, task="inpaint")
    main_process = st.state.is_main_process
    res, latent = resolution(st.pipe, args.resolution)
    fill_family_defaults(args, cli.model_family(st.pipe))

    cases = build_cases(st, args, res, latent)
    banked = args.xt_source in ("cache", "noise")
    own = args.retain_weight > 0 and args.retain_xt == "own"
    if main_process:
        print(f"{len(cases.rows)} prompt variations x {cases.n_masks} masks"
              + (f" + {cases.n_global} whole-image" if cases.n_global else "")
              + f" = {len(cases.v_of)} cases; generating {len(cases.rows)} source images"
              + (f", then a bank of {args.bank_size} x_t trajectories" if banked else "")
              + (f" and {args.retain_bank_size} retain ones" if own and banked else ""))
    sources = build_sources(st, args, cases, res, latent)

    parts = []                                     # each iteration's loss terms, for the report

    def loss_fn(it, rng):
        loss, p = grid_erasure_loss(rng, st, cases, sources, args.batch_size, args.negative_guidance,
                                    args.outside_weight, args.retain_weight)
        parts.append(p)
        return loss

    out, stem = args.output, args.output.removesuffix(".safetensors")
    meta = training_metadata(args, st, args.concept, args.concept, res, algorithm="grid-erasure", preset=args.preset)
    report = train(loss_fn, st, out, args.iterations, args.lr, meta, seed=args.seed,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, desc=f"grid erasure {args.preset}",
                   extra_report=lambda: report_extras(args, cases, sources, parts, st.pipe.unet))
    if not main_process:
        return out
    loss_curve(report["losses"], stem + ".loss.png", f"grid erasure of {args.concept!r}, preset {args.preset} "
               f"({len(cases.rows)} prompts x {cases.n_masks} masks)")
    print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
          f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
          f"{report['forward_equivalents_per_iteration']:.1f} UNet forward-equivalents/iteration, x_t "
          + (f"stream warm-up {report['warmup_seconds']} s" if args.xt_source == "stream"
             else f"bank {report['bank_seconds']} s ({report['bank_forwards']} forwards)")
          + (f" + retain bank {report['retain_bank_seconds']} s" if report.get("retain_bank_size") else "")
          + f", peak memory {report['peak_memory_mb']:.0f} MiB; "
          f"report {stem}.json, loss curve {stem}.loss.png, prompts {stem}.prompts.csv")
    return out
