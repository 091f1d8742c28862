"""Erased Stable Diffusion (Gandikota et al., ICCV 2023), one program for SD and SDXL.

`original_esd/esd_sd.py` and `original_esd/esd_sdxl.py` are this program with their defaults
(`SD_DEFAULTS`, `SDXL_DEFAULTS`): one copy of the loop, so no run trains twice.

Per iteration: x_t from `--xt_source` (faithful `sample`: k ~ U[0, num_inference_steps-1] guided
steps of the frozen model on erase_from; `stream`: the current states of `--stream_width` such
trajectories, which then move one step on the teacher's own predictions); one batched teacher call
with the original weights gives eps_c (concept), eps_null ("") and eps_from; the student (trained
UNet, erase_from prompt) is regressed onto eps_from - negative_guidance * (eps_c - eps_null).
"""
import argparse
import os

from .models import TOY_MODEL
from .objectives import esd_target, masked_mse, teacher_eps
from .params import TRAIN_METHODS
from .prompts import encode
from .trainer import add_runtime_args, forward_equivalents, prepare_from_args, resolution, seed_everything, train
from .trajectories import XT_SOURCES, make_source, unet_eps

STREAM_WIDTH = 4   # xt_source stream: measured on the toy model (docs/real_size.md); 1 and 2 lose other styles
SD_DEFAULTS = dict(base_model=TOY_MODEL, lr=5e-5, negative_guidance=2.0, guidance_scale=3.0)
SDXL_DEFAULTS = dict(base_model="stabilityai/stable-diffusion-xl-base-1.0", lr=2e-4, negative_guidance=1.0,
                     guidance_scale=2.0)


def default_name(concept, erase_from, method):
    """The reference repo's file name: esd-{concept}-from-{from}-{method}.safetensors, spaces as _."""
    clean = lambda s: s.strip().replace(" ", "_").replace("/", "_")  # noqa: E731
    return f"esd-{clean(concept)}-from-{clean(erase_from or concept)}-{method}.safetensors"


def build_parser(defaults, description):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--erase_concept", required=True, help="concept to erase, e.g. 'Vincent van Gogh'")
    a("--erase_from", default=None, help="prompt to erase it from (default: the concept itself)")
    a("--train_method", default="esd-x", choices=list(TRAIN_METHODS),
      help="; ".join(f"{k}: {v[0]}" for k, v in TRAIN_METHODS.items()))
    a("--iterations", type=int, default=200, help="training iterations")
    a("--lr", type=float, default=defaults["lr"], help="Adam learning rate (constant)")
    a("--negative_guidance", type=float, default=defaults["negative_guidance"], help="eta in the ESD target")
    a("--num_inference_steps", type=int, default=50, help="scheduler steps that define the k grid")
    a("--guidance_scale", type=float, default=defaults["guidance_scale"], help="CFG scale when producing x_t")
    a("--save_path", default=os.path.dirname(TOY_MODEL), help="folder for the erasure file and its JSON log")
    a("--base_model", default=defaults["base_model"], help="hub id or local pipeline folder")
    a("--resolution", type=int, default=None, help="image size (default: the model's native size)")
    a("--seed", type=int, default=0, help="seeds torch, numpy, random and the x_t noise")
    a("--batch_size", type=int, default=1, help="x_t samples per iteration")
    a("--xt_source", default="sample", choices=list(XT_SOURCES),
      help="; ".join(f"{k}: {v}" for k, v in XT_SOURCES.items()))
    a("--bank_size", type=int, default=8, help="trajectories in the bank (xt_source cache/noise)")
    a("--stream_width", type=int, default=STREAM_WIDTH,
      help="trajectories kept alive by xt_source stream (at least --batch_size)")
    a("--checkpoint_every", type=int, default=50, help="iterations between resumable checkpoints")
    a("--resume", action=argparse.BooleanOptionalAction, default=True, help="resume from a checkpoint if present")
    add_runtime_args(p)
    return p


def main(args):
    seed_everything(args.seed)
    st = prepare_from_args(args)
    pipe, unet, scheduler = st.pipe, st.pipe.unet, st.pipe.scheduler
    res, latent = resolution(pipe, args.resolution)
    concept, erase_from = encode(pipe, [args.erase_concept], res), encode(pipe, [args.erase_from or args.erase_concept], res)
    null = encode(pipe, [""], res)
    st.offload("text_encoder", "text_encoder_2", "vae")
    conds = [concept, null] + ([erase_from] if args.erase_from else [])
    with st.autocast():                            # a bank or warm-up runs here, in the compute dtype
        source = make_source(args.xt_source, st.teacher_unet, scheduler, erase_from, null, args.guidance_scale,
                             args.num_inference_steps, latent, st.teacher_params, args.bank_size, args.stream_width,
                             st.process_seed(args.seed), st.device, st.dtype)
    b = args.batch_size

    def loss_fn(it, rng):
        x, t, _ = source.draw(source.pick_step(rng), b)
        eps = teacher_eps(st.teacher_unet, scheduler, x, t, conds, st.teacher_params)   # 2-3 predictions, one call
        eps_c, eps_null = eps[0], eps[1]
        eps_from = eps[2] if args.erase_from else eps_c
        source.advance(eps_from, eps_null)         # stream: the frozen trajectory's guided step, for free
        pred = unet_eps(unet, scheduler, x, t, erase_from.repeat(b))
        return masked_mse(pred, esd_target(eps_from, eps_c, eps_null, args.negative_guidance))

    out = os.path.join(args.save_path, default_name(args.erase_concept, args.erase_from, args.train_method))
    meta = {"base_model": args.base_model, "base_fingerprint": st.base_fingerprint, "method": args.train_method,
            "concept": args.erase_concept, "erase_from": args.erase_from or args.erase_concept, "args": vars(args),
            "resolution": res}

    def cost():
        c = source.cost()
        return {**c, **forward_equivalents(c["sampling_forwards"], args.iterations, teacher_rows=len(conds) * b,
                                           student_rows=b, checkpointing=args.gradient_checkpointing)}
    report = train(loss_fn, st, out, args.iterations, args.lr, meta, seed=args.seed,
                   checkpoint_every=args.checkpoint_every, resume=args.resume, desc=f"ESD {args.train_method}",
                   extra_report=cost)
    if st.state.is_main_process:
        print(f"wrote {out} ({report['tensors_changed']} tensors, {report['parameters_changed']:,} parameters) in "
              f"{report['train_seconds']:.1f} s, {report['seconds_per_iteration']:.3f} s/iteration, "
              f"{report['forward_equivalents_per_row']:.1f} UNet forward-equivalents per row, bank "
              f"{report['bank_seconds']} s ({report['bank_forwards']} forwards), peak memory "
              f"{report['peak_memory_mb']:.0f} MiB")
    return out
