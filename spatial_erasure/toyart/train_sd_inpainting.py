r"""Fine-tune the toy SD into a 9-channel inpainting model, the way SD-inpainting was made.

The UNet gets 5 extra input channels (mask, masked-image latent), initialised to zero, so it starts
as the text-to-image model. Training images are composites of one toy scene in two styles: the
background style everywhere and, inside a random mask (rectangle, ellipse, stroke, grid cell,
centre, or the whole image), the style the caption names; a third of them use one style only. The
model learns to paint the prompted style inside the mask and keep the context. Text encoder, VAE,
tokenizer and scheduler are the toy model's, unchanged: relative links to its folders; the UNet is
stored in fp16 to keep the bundle small.

    python -m spatial_erasure.toyart.train_sd_inpainting --output models/toyart-sd-inpainting
    python -m spatial_erasure.toyart.train_sd_inpainting --device cuda --batch_size 128 --num_workers 8 \
        --time_budget 300
"""
import json
import os
import shutil
import time

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from .. import cli
from ..checkpoint import load_state, replace_folder, save_state
from ..distributed import process_device
from ..models import MODELS_DIR, TOY_MODEL, load_pipeline
from .composites import Composites, scene_bank
from .train_sd import min_snr_loss
from .world import RES


def inpainting_unet(unet):
    """A 9-input-channel copy of a 4-channel UNet: conv_in's 5 new input channels start at zero."""
    cfg = {**unet.config, "in_channels": 9}
    new = UNet2DConditionModel.from_config(cfg)
    sd = unet.state_dict()
    w = sd["conv_in.weight"]
    sd["conv_in.weight"] = torch.cat([w, torch.zeros(w.shape[0], 5, *w.shape[2:])], 1)
    new.load_state_dict(sd)
    return new


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    cli.add_model_arg(p, TOY_MODEL, "the toy text-to-image pipeline to start from")
    cli.add_output_arg(p, str(MODELS_DIR / "toyart-sd-inpainting"),
                       "pipeline folder to write (default: models/toyart-sd-inpainting)")
    a("--work_dir", default="runs/toyart-sd-inpainting", help="checkpoints and scene bank; rerun to resume")
    cli.add_seed_arg(p, 0, "seed for data and noise")
    a("--scenes", type=int, default=1200, help="layouts in the scene bank, each in every style (default: %(default)s)")
    a("--steps", type=int, default=1200, help="fine-tuning steps (default: %(default)s)")
    a("--batch_size", type=int, default=48, help="images per step (default: %(default)s)")
    a("--lr", type=float, default=2e-4, help="AdamW learning rate after warmup (default: %(default)s)")
    a("--warmup", type=int, default=100, help="warmup steps (default: %(default)s)")
    a("--snr_gamma", type=float, default=5.0, help="min-SNR weighting gamma (default: %(default)s)")
    a("--ema_decay", type=float, default=0.995, help="EMA decay of the saved weights (default: %(default)s)")
    a("--mask_weight", type=float, default=1.0,
      help="loss weight of latent pixels inside the mask, 1 outside (default: %(default)s)")
    a("--checkpoint_every", type=int, default=100, help="steps between checkpoints (default: %(default)s)")
    a("--time_budget", type=float, default=None,
      help="stop after this many seconds of training, checkpoint and export; rerun to go on (default: none)")
    a("--init_unet", default=None,
      help="start from this 9-channel UNet folder (e.g. a bundled model's unet/) instead of the toy UNet "
           "with zero-initialised extra channels; ignored when --work_dir holds a checkpoint")
    cli.add_device_arg(p)
    a("--num_workers", type=int, default=0, help="DataLoader processes composing batches (default: in-process)")
    return p.parse_args(argv)


def export(output, base_model, unet, ema, info):
    """Write a StableDiffusionInpaintPipeline folder `output` atomically: the base pipeline folder's files
    (linked), the new UNet (fp16)."""
    tmp = output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    shutil.copy(os.path.join(base_model, "model_index.json"), tmp)
    for name in os.listdir(base_model):    # unchanged components: relative links, not copies
        if os.path.isdir(os.path.join(base_model, name)) and name != "unet":
            target = os.path.relpath(os.path.abspath(os.path.join(base_model, name)), os.path.abspath(output))
            os.symlink(target, os.path.join(tmp, name))
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.to(torch.float16).save_pretrained(os.path.join(tmp, "unet"), safe_serialization=True)
    unet.to(torch.float32)
    ema.restore(unet.parameters())
    with open(os.path.join(tmp, "model_index.json")) as f:
        index = json.load(f)
    index["_class_name"] = StableDiffusionInpaintPipeline.__name__
    with open(os.path.join(tmp, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    with open(os.path.join(tmp, "training.json"), "w") as f:
        json.dump(info, f, indent=1)
    replace_folder(tmp, output)


def main(args):
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    device = torch.device(process_device(args.device))
    torch.backends.cuda.matmul.allow_tf32 = True
    pipe = load_pipeline(args.base_model)
    vae, te, tok = pipe.vae.requires_grad_(False), pipe.text_encoder.requires_grad_(False), pipe.tokenizer
    vae.to(device), te.to(device)
    earlier = None    # the record of the run a continuation starts from, kept in the new record
    if args.init_unet:
        unet = UNet2DConditionModel.from_pretrained(args.init_unet, use_safetensors=True).float()
        if unet.config.in_channels != 9:
            cli.fail(f"--init_unet {args.init_unet} has {unet.config.in_channels} input channels; "
                             "pass the unet/ folder of a 9-channel inpainting model")
        record = os.path.join(os.path.dirname(os.path.abspath(args.init_unet)), "training.json")
        if os.path.exists(record):
            with open(record) as f:
                earlier = json.load(f)
    else:
        unet = inpainting_unet(pipe.unet)
    unet.to(device)
    images, subjects = scene_bank(args.scenes, args.seed, os.path.join(args.work_dir, "scenes.safetensors"))
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=1e-2)
    ema = EMAModel(unet.parameters(), decay=args.ema_decay)
    state_path = os.path.join(args.work_dir, "unet.safetensors")
    step, extra = 0, {"seconds": 0.0}
    if os.path.exists(state_path):
        step, extra = load_state(state_path, {"unet": unet, "ema": ema.shadow_params}, opt)
        ema.optimization_step = step
        print(f"resumed at step {step}")
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    s = vae.config.scaling_factor
    f = pipe.vae_scale_factor
    gen = torch.Generator(device).manual_seed(args.seed * 1000 + step)
    data = iter(torch.utils.data.DataLoader(Composites(images, subjects, args.batch_size, (args.seed, step)),
                                            batch_size=None, num_workers=args.num_workers))
    t_start, seconds0 = time.time(), extra["seconds"]
    unet.train()
    done = step
    bar = tqdm(range(step, args.steps), desc="inpainting unet", initial=step, total=args.steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        x, masks, caps = next(data)
        x, masks = x.to(device), masks.to(device)
        with torch.no_grad():
            both = vae.encode(torch.cat([x, x * (masks < 0.5)])).latent_dist.sample(generator=gen) * s
            z0, masked = both.chunk(2)
            emb = te(tok(caps, padding="max_length", max_length=tok.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(device))[0]
        mlat = F.interpolate(masks, size=(RES // f, RES // f))          # as the pipeline: nearest
        noise = torch.randn(z0.shape, generator=gen, device=device)
        t = torch.randint(0, sched.config.num_train_timesteps, (len(z0),), generator=gen, device=device)
        pred = unet(torch.cat([sched.add_noise(z0, noise, t), mlat, masked], 1), t, emb).sample
        loss = min_snr_loss(pred, noise, sched, t, args.snr_gamma, weight=1 + (args.mask_weight - 1) * mlat)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        out_of_time = args.time_budget is not None and time.time() - t_start > args.time_budget
        if done % args.checkpoint_every == 0 or done == args.steps or out_of_time:
            save_state(state_path, {"unet": unet, "ema": ema.shadow_params}, opt, done,
                       {"seconds": seconds0 + time.time() - t_start})
        if out_of_time:
            print(f"time budget of {args.time_budget:.0f} s spent at step {done}; rerun to go on")
            break
    run_args = {k: os.path.relpath(v) if k in ("base_model", "out") else v for k, v in vars(args).items()}
    info = {"args": run_args, "steps_done": done, "seconds": round(seconds0 + time.time() - t_start),
            "base_model": os.path.relpath(args.base_model), "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch_threads": torch.get_num_threads(), "continues": earlier}
    export(args.output, args.base_model, unet, ema, info)
    print(f"wrote {args.output} ({info['seconds']} s of training)")


if __name__ == "__main__":
    main(parse_args())
