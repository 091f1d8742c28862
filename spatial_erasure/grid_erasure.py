"""Inpainting erasure: erase a concept inside spatial masks, training cross-attention only.

Per iteration: a case (prompt variation p with its neutral twin p0, mask M from the G x G grid
plus centre) and a step k. x_t is the state after k guided steps of the frozen model inpainting
M on the source image of p0 (generated once) with prompt p: the blended loop for a 4-channel
UNet, cat(x_t, mask, masked-image latent) for a 9-channel inpainting UNet. A retain prompt r (another
artist or style) is inpainted the same way, from its own trajectory (`--retain_xt own`), giving x_t^r.
One teacher call gives eps(p0), eps(p), eps("") at x_t and eps(r) at x_t^r; the student sees p and r.
Loss:

    inside M:   MSE(student(p), eps(p0) - negative_guidance * (eps(p) - eps("")))
  + outside_weight * outside M: MSE(student(p), eps(p))
  + retain_weight * MSE(student(r, x_t^r), eps(r, x_t^r))

`--global_share` adds cases whose mask is the whole image: plain text-to-image states, ESD's case,
where the retain term also sees global generation. On the toy model it did not improve global
subject retention (README), so the default 0 keeps the paper's 10-mask set exactly.

Presets (`--preset`) set prompts x iterations and the x_t source; any flag overrides them.
"""
import argparse
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from .masks import grid_masks, mask_names, to_latent
from .models import TOY_MODEL, MODELS_DIR
from .objectives import esd_target, grid_erasure_loss, teacher_eps
from .params import TRAIN_METHODS
from .prompts import Cond, concept_variations, encode, is_toy, retain_prompts, write_prompt_csv
from .reports import loss_curve
from .trainer import add_runtime_args, forward_equivalents, prepare_from_args, resolution, seed_everything, train
from .trajectories import XT_SOURCES, Inpainting, batch_timesteps, denoise, make_source, unet_eps

PRESETS = {
    "basic": dict(num_prompts=5, iterations=10, xt_source="stream", bank_size=16, retain_bank_size=4),
    "efficient": dict(num_prompts=20, iterations=100, xt_source="stream", bank_size=64, retain_bank_size=16),
    "scaled": dict(num_prompts=100, iterations=500, xt_source="stream", bank_size=256, retain_bank_size=64),
}
STREAM_WIDTH = 16  # xt_source stream: trajectories alive per source (concept, retain); 4 lost Warhol (docs/real_size.md)
RETAIN_XT = {"own": "the retain prompt's own inpainting trajectories (a second bank of --retain_bank_size, or "
                    "sampled per iteration)",
             "concept": "the concept's x_t (no extra cost; the retain term then guards only states the concept "
                        "visits)"}
# Defaults by model family: the toy model's were measured (README); for real SD, ESD's reference values.
DEFAULTS = {"toy": dict(lr=7e-4, negative_guidance=4.0, outside_weight=1.0, retain_weight=1.0),
            "real": dict(lr=5e-5, negative_guidance=2.0, outside_weight=1.0, retain_weight=1.0)}
# The scaled preset's 500 iterations are 2.5x ESD-x's 200: at 7e-4 they overshoot (subjects 62%); 3e-4 (README).
TOY_PRESET_LR = {"scaled": 3e-4}


def build_parser(preset_default="efficient"):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--preset", default=preset_default, choices=list(PRESETS),
      help="; ".join(f"{k}: {v['num_prompts']} prompts x {v['iterations']} iterations, xt_source {v['xt_source']}"
                     for k, v in PRESETS.items()) + " (default: %(default)s)")
    a("--concept", default="Vincent van Gogh", help="artist or style to erase (default: %(default)s)")
    a("--base_model", default=TOY_MODEL,
      help="SD 1.x/2.x or SD-inpainting hub id or folder (default: the bundled toy model)")
    a("--grid", type=int, default=3, help="G: the G x G grid of masks (default: %(default)s)")
    a("--center", action=argparse.BooleanOptionalAction, default=True, help="add the centre mask (default: on)")
    a("--global_share", type=float, default=0.0,
      help="share of cases whose mask is the whole image (text-to-image states; 0: grid masks only) "
           "(default: %(default)s)")
    a("--num_prompts", type=int, help="prompt variations (cases: prompts x masks); preset")
    a("--iterations", type=int, help="training iterations; preset")
    toy, real = DEFAULTS["toy"], DEFAULTS["real"]
    a("--lr", type=float, help=f"Adam learning rate (default: {toy['lr']} toy model, {TOY_PRESET_LR['scaled']} with "
                               f"the scaled preset; {real['lr']} real SD)")
    a("--negative_guidance", type=float,
      help=f"eta of the target (default: {toy['negative_guidance']} toy model, {real['negative_guidance']} real SD)")
    a("--outside_weight", type=float, help="weight of keeping the concept prediction outside the mask "
                                           f"(default: {toy['outside_weight']})")
    a("--retain_weight", type=float, help=f"weight of the retain-prompt term (default: {toy['retain_weight']})")
    a("--train_method", default="esd-x", choices=list(TRAIN_METHODS),
      help="; ".join(f"{k}: {v[0]}" for k, v in TRAIN_METHODS.items()) + " (default: %(default)s)")
    a("--xt_source", choices=list(XT_SOURCES), help="; ".join(f"{k}: {v}" for k, v in XT_SOURCES.items()) + "; preset")
    a("--bank_size", type=int, help="trajectories in the bank for xt_source cache/noise; preset")
    a("--retain_xt", default="own", choices=list(RETAIN_XT),
      help="x_t of the retain term: " + "; ".join(f"{k}: {v}" for k, v in RETAIN_XT.items()) + " (default: own)")
    a("--retain_bank_size", type=int, help="retain trajectories in their bank (cache/noise, --retain_xt own); preset")
    a("--stream_width", type=int, default=STREAM_WIDTH,
      help="trajectories kept alive by xt_source stream, for the concept and (--retain_xt own) the retain prompts; at "
           "least --batch_size (default: %(default)s)")
    a("--num_inference_steps", type=int, default=50, help="scheduler steps of the k grid (default: %(default)s)")
    a("--guidance_scale", type=float, default=3.0, help="CFG scale when producing x_t (default: %(default)s)")
    a("--batch_size", type=int, default=1, help="cases per iteration (default: %(default)s)")
    a("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    a("--seed", type=int, default=0, help="seeds prompts, source images, x_t noise and sampling (default: 0)")
    a("--checkpoint_every", type=int, default=50, help="iterations between checkpoints (default: %(default)s)")
    a("--resume", action=argparse.BooleanOptionalAction, default=True, help="resume from a checkpoint if present")
    a("--output", default=None, help="erasure file to write (default: models/grid-{concept}-{preset}-{method}"
                                     ".safetensors); the JSON report, prompts CSV and loss PNG go beside it")
    add_runtime_args(p)
    return p


def parse_args(argv=None, preset_default="efficient"):
    args = build_parser(preset_default).parse_args(argv)
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("num_prompts", "iterations", "bank_size", "retain_bank_size", "grid", "batch_size", "stream_width"):
        if getattr(args, k) < 1:
            raise SystemExit(f"--{k} must be at least 1, got {getattr(args, k)}")
    if not 0 <= args.global_share < 1:
        raise SystemExit(f"--global_share must be in [0, 1), got {args.global_share}")
    return args


def fill_family_defaults(args, toy):
    """The model family's lr, negative guidance and loss weights, wherever the flag was not given."""
    for k, v in DEFAULTS["toy" if toy else "real"].items():
        if getattr(args, k) is None:
            setattr(args, k, TOY_PRESET_LR.get(args.preset, v) if toy and k == "lr" else v)
    return args


def default_output(args):
    clean = args.concept.strip().replace(" ", "_").replace("/", "_")
    return os.path.join(MODELS_DIR, f"grid-{clean}-{args.preset}-{args.train_method}.safetensors")


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
    nine = pipe.unet.config.in_channels == 9
    for i in tqdm(range(0, len(seeds), chunk), desc="source images", unit="chunk", leave=False):
        s = seeds[i:i + chunk]
        noise = torch.stack([torch.randn(latent, generator=torch.Generator().manual_seed(int(x))) for x in s])
        noise = noise.to(st.device, st.dtype)
        inpaint = None
        if nine:
            ones = torch.ones(len(s), 1, *latent[1:], device=st.device, dtype=st.dtype)
            grey = torch.zeros(len(s), 3, res, res, device=st.device, dtype=st.dtype)
            blank = pipe.vae.encode(grey).latent_dist.mode() * pipe.vae.config.scaling_factor
            inpaint = Inpainting(torch.zeros_like(noise), ones, blank)
        out.append(denoise(st.teacher_unet, pipe.scheduler, noise, neutral[i:i + chunk], null.repeat(len(s)), guidance,
                           n_steps, n_steps, st.teacher_params, inpaint=inpaint))
    return torch.cat(out)


def main(args):
    seed_everything(args.seed)
    out = args.output or default_output(args)
    if not out.endswith(".safetensors"):
        raise SystemExit(f"--output {out} must end in .safetensors (the erasure file); reports go beside it")
    st = prepare_from_args(args, task="inpaint")
    pipe, main_process = st.pipe, st.state.is_main_process
    unet, scheduler, vae = pipe.unet, pipe.scheduler, pipe.vae
    teacher, originals = st.teacher_unet, st.teacher_params
    nine = unet.config.in_channels == 9
    res, latent = resolution(pipe, args.resolution)
    toy = is_toy(pipe)
    fill_family_defaults(args, toy)

    rows = concept_variations(args.concept, args.num_prompts, toy, args.seed)
    stem = out.removesuffix(".safetensors")
    if main_process:
        write_prompt_csv(stem + ".prompts.csv", rows, extra_columns=["neutral"])
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
    own = args.retain_weight > 0 and args.retain_xt == "own"
    banked = args.xt_source in ("cache", "noise")
    if main_process:
        print(f"{len(rows)} prompt variations x {n_masks} masks" + (f" + {n_global} whole-image" if n_global else "")
              + f" = {len(v_of)} cases; generating {len(rows)} source images"
              + (f", then a bank of {args.bank_size} x_t trajectories" if banked else "")
              + (f" and {args.retain_bank_size} retain ones" if own and banked else ""))
    start = time.time()
    with st.autocast():
        z0 = source_latents(st, neutral, null, [r["evaluation_seed"] for r in rows], res, latent,
                            args.num_inference_steps, args.guidance_scale)
        cases = Inpainting(z0[v_of], lat[m_of],
                           masked_latents(vae, z0, v_of, pix[m_of].to(st.device)) if nine else None)
        st.offload("vae")
        source_seconds = time.time() - start
        common = dict(params=originals, width=args.stream_width, device=st.device, dtype=st.dtype, inpaint=cases)
        source = make_source(args.xt_source, teacher, scheduler, concept[v_of], null, args.guidance_scale,
                             args.num_inference_steps, latent, bank_size=args.bank_size,
                             seed=st.process_seed(args.seed), desc="x_t", **common)
        # the retain prompt r_of[c] inpainting case c's image and mask, from its own trajectory
        retain_source = make_source(args.xt_source, teacher, scheduler, retain_c[r_of], null, args.guidance_scale,
                                    args.num_inference_steps, latent, bank_size=args.retain_bank_size,
                                    seed=st.process_seed(args.seed + 1), desc="retain x_t", **common) if own else None
    b = args.batch_size
    parts = []
    # a streamed retain trajectory also needs eps("") at its own x_t to move on: one more row in the teacher call
    retain_null = own and retain_source.streams

    def loss_fn(it, rng):
        k = source.pick_step(rng)
        x, t, c = source.draw(k, b)
        v, m = v_of[c], m_of[c]
        if own:
            xr, tr, cr = retain_source.draw(k, b)
            r = r_of[cr]
        else:
            xr, tr, cr, r = x, t, c, torch.as_tensor(rng.integers(0, len(retain), b))
        extra, extra_r = (cases[c].extra(), cases[cr].extra()) if nine else (None, None)
        n = 4 + retain_null                        # eps(p0), eps(p), eps("") at x; eps(r) [and eps("")] at x_r
        eps = teacher_eps(teacher, scheduler, [x, x, x, xr, xr][:n], [t, t, t, tr, tr][:n],
                          [neutral[v], concept[v], null, retain_c[r], null][:n], originals,
                          [extra, extra, extra, extra_r, extra_r][:n])
        eps_n, eps_c, eps_null, eps_r = eps[:4]
        source.advance(eps_c, eps_null)
        if retain_null:
            retain_source.advance(eps_r, eps[4])
        pred_c, pred_r = unet_eps(unet, scheduler, torch.cat([x, xr]), batch_timesteps([t, tr], b),
                                  Cond.cat([concept[v], retain_c[r]]),
                                  extra=None if extra is None else torch.cat([extra, extra_r])).chunk(2)
        loss, p = grid_erasure_loss(pred_c, esd_target(eps_n, eps_c, eps_null, args.negative_guidance), eps_c,
                                    lat[m], args.outside_weight, pred_r, eps_r, args.retain_weight)
        parts.append(p)
        return loss

    def extra_report():
        c = source.cost()
        rc = retain_source.cost() if own else {}
        sampling = c["sampling_forwards"] + rc.get("sampling_forwards", 0)
        return {**c, **{"retain_" + k: v for k, v in rc.items() if k != "xt_source"}, "retain_xt": args.retain_xt,
                **forward_equivalents(sampling, args.iterations, teacher_rows=(4 + retain_null) * b,
                                      student_rows=2 * b, rows=b, checkpointing=args.gradient_checkpointing),
                "source_images": len(rows), "source_forwards": 2 * args.num_inference_steps * len(rows),
                "source_seconds": round(source_seconds, 2),
                "prompts": [{k: r[k] for k in ("prompt", "neutral", "evaluation_seed")} for r in rows],
                "retain_prompts": retain, "masks": names, "cases": len(v_of), "global_cases": n_global,
                "unet_in_channels": unet.config.in_channels,
                "loss_parts_last50": {k: round(sum(p[k] for p in parts[-50:]) / max(1, len(parts[-50:])), 6)
                                      for k in ("inside", "outside", "retain")}}

    meta = {"base_model": args.base_model, "base_fingerprint": st.base_fingerprint, "method": args.train_method,
            "concept": args.concept, "erase_from": args.concept, "algorithm": "grid-erasure", "preset": args.preset,
            "args": vars(args), "resolution": res}
    report = train(loss_fn, st, out, args.iterations, args.lr, meta, seed=args.seed,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, desc=f"grid erasure {args.preset}",
                   extra_report=extra_report)
    if not main_process:
        return out
    loss_curve(report["losses"], stem + ".loss.png",
               f"grid erasure of {args.concept!r}, preset {args.preset} ({len(rows)} prompts x {n_masks} masks)")
    print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
          f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
          f"{report['forward_equivalents_per_iteration']:.1f} UNet forward-equivalents/iteration, x_t "
          + (f"stream warm-up {report['warmup_seconds']} s" if args.xt_source == "stream"
             else f"bank {report['bank_seconds']} s ({report['bank_forwards']} forwards)")
          + (f" + retain bank {report['retain_bank_seconds']} s" if report.get("retain_bank_size") else "")
          + f", peak memory {report['peak_memory_mb']:.0f} MiB; "
          f"report {stem}.json, loss curve {stem}.loss.png, prompts {stem}.prompts.csv")
    return out
