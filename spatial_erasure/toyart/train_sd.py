"""Train the toy art world's Stable Diffusion from scratch: VAE (then its decoder on mixed styles),
then text encoder + UNet.

(This trains the toy model itself; erasure training is spatial_erasure.trainer.)
The result is a standard diffusers StableDiffusionPipeline folder (safetensors), the default
`--base_model` of every script. Training checkpoints to `--work_dir` every few minutes and resumes
from there when rerun with the same command, so it can span several sittings (about 2-3 hours on
2 CPU cores; minutes on a GPU).

    python -m spatial_erasure.toyart.train_sd --output models/toyart-sd --work_dir runs/toyart-sd
"""
import json
import os
import platform
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .. import cli
from ..checkpoint import atomic_save, load_state, replace_folder, save_state
from ..masks import to_latent
from ..models import TOY_MODEL
from .tokenizer import build as build_tokenizer, default_bpe_path
from .classifier import to_tensor
from .composites import batch as composite_batch, scene_bank
from .painter import render
from .vae import make_vae, random_scene, train_vae, tune_decoder
from .world import RES, STYLES, SUBJECTS, caption_for

MAX_TOKENS = 24   # the world's longest prompt is 14 tokens; 77 would triple cross-attention cost


def make_text_encoder(tokenizer):
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                         num_attention_heads=4, max_position_embeddings=MAX_TOKENS,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(cfg)


def make_unet(channels):
    # SD 1.x's block types at a toy size (block widths `channels`): cross-attention (attn2) at 16x16 and 8x8 latents
    ch = tuple(channels)
    return UNet2DConditionModel(sample_size=RES // 4, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=ch, norm_num_groups=16, cross_attention_dim=128,
                                attention_head_dim=8,
                                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def noise_scheduler():
    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def min_snr_loss(pred, noise, sched, t, gamma, weight=None):
    """Epsilon MSE with min-SNR-gamma weighting (Hang et al. 2023): faster convergence. `weight`
    (broadcastable to pred) weights latent pixels, e.g. the masked region of an inpainting batch."""
    snr = compute_snr(sched, t)
    se = F.mse_loss(pred, noise, reduction="none")
    if weight is not None:
        se = se * weight
    return (se.mean((1, 2, 3)) * torch.clamp(snr, max=gamma) / snr).mean()


@torch.no_grad()
def latent_bank(vae, path, bank_size, seed):
    """Encode `bank_size` procedural images once (cached at `path`); (latents (N,4,16,16), style idx, subject idx)."""
    if os.path.exists(path):
        t = load_file(path)
        return t["latents"], t["style"], t["subject"]
    rng = np.random.default_rng(seed + 7)
    lat, st, su = [], [], []
    for _ in tqdm(range(0, bank_size, 256), desc="latent bank"):
        scenes = [random_scene(rng) for _ in range(256)]
        x = to_tensor(np.stack([render(s, u, rng=rng) for s, u in scenes]))
        lat.append(vae.encode(x).latent_dist.mean)
        st += [STYLES.index(s) for s, _ in scenes]
        su += [SUBJECTS.index(u) for _, u in scenes]
    lat = torch.cat(lat)
    t = {"latents": lat, "style": torch.tensor(st), "subject": torch.tensor(su)}
    atomic_save(t, path)
    return lat, t["style"], t["subject"]


def save_pipeline(output, tokenizer_dir, vae, text_encoder, tokenizer, unet, ema, info):
    """Write the standard pipeline folder `output` with the EMA weights, atomically (tmp folder + rename);
    its tokenizer is the classic CLIP folder `tokenizer_dir`."""
    ema.store(list(unet.parameters()) + list(text_encoder.parameters()))
    ema.copy_to(list(unet.parameters()) + list(text_encoder.parameters()))
    sched = DDIMScheduler.from_config(noise_scheduler().config, clip_sample=False, set_alpha_to_one=False,
                                      steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    tmp = output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    ship_tokenizer(tokenizer_dir, os.path.join(tmp, "tokenizer"))
    with open(os.path.join(tmp, "training.json"), "w") as f:
        json.dump(info, f, indent=1)
    replace_folder(tmp, output)
    ema.restore(list(unet.parameters()) + list(text_encoder.parameters()))


def work_tokenizer(work_dir, source):
    """(folder, CLIPTokenizer) of the run's tokenizer in `work_dir`: the folder `source` copied there (the
    bundled one), else rebuilt from CLIP's merges; model_max_length MAX_TOKENS."""
    folder = os.path.join(work_dir, "tokenizer")
    if not os.path.exists(folder):
        if os.path.exists(os.path.join(source, "vocab.json")):
            shutil.copytree(source, folder)
        else:
            build_tokenizer(folder, default_bpe_path())
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    tokenizer.model_max_length = MAX_TOKENS
    return folder, tokenizer


def ship_tokenizer(tokenizer_dir, folder):
    """Put the classic CLIP tokenizer folder `tokenizer_dir` (vocab.json + merges.txt, which every
    transformers version and CompVis/stable-diffusion-v1-4/tokenizer use) in place of a saved pipeline's
    tokenizer `folder` (transformers 5 saves tokenizer.json only), with model_max_length MAX_TOKENS."""
    shutil.rmtree(folder)
    shutil.copytree(tokenizer_dir, folder)
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    with open(cfg_path, "w") as f:
        json.dump({**cfg, "model_max_length": MAX_TOKENS}, f, indent=2)


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    cli.add_output_arg(p, "models/toyart-sd", "pipeline folder to write")
    a("--work_dir", default="runs/toyart-sd", help="checkpoints and latent cache; rerun to resume")
    cli.add_seed_arg(p, 0, "seed for weights, data and noise")
    a("--tokenizer", default=os.path.join(TOY_MODEL, "tokenizer"),
      help="CLIP tokenizer folder to use; when missing it is built (needs `pip install --no-deps open_clip_torch`)")
    a("--init_from", default=None, help="exported pipeline folder to continue from when --work_dir has no checkpoint")
    a("--vae_steps", type=int, default=3000, help="VAE training steps")
    a("--vae_batch_size", type=int, default=32, help="VAE images per step")
    a("--vae_lr", type=float, default=1e-3, help="VAE learning rate")
    a("--kl_weight", type=float, default=1e-6, help="KL weight of the VAE loss (SD uses ~1e-6)")
    a("--decoder_steps", type=int, default=1500, help="decoder fine-tuning steps on mixed-style composites")
    a("--decoder_lr", type=float, default=3e-4, help="decoder fine-tuning peak learning rate (cosine)")
    a("--decoder_scenes", type=int, default=600, help="layouts (each in every style) the composites are cut from")
    a("--bank_size", type=int, default=40_000, help="procedural images encoded once for UNet training")
    a("--unet_steps", type=int, default=6000, help="UNet + text encoder steps")
    a("--unet_channels", type=int, nargs=3, default=[48, 96, 96], help="UNet block widths")
    a("--batch_size", type=int, default=64, help="UNet images per step")
    a("--lr", type=float, default=5e-4, help="UNet + text encoder peak learning rate (cosine)")
    a("--warmup", type=int, default=300, help="learning-rate warmup steps")
    a("--uncond_prob", type=float, default=0.1, help="share of captions dropped to '' (for guidance)")
    a("--snr_gamma", type=float, default=5.0, help="min-SNR loss weighting gamma")
    a("--ema_decay", type=float, default=0.999, help="EMA decay of the saved weights")
    a("--composite_share", type=float, default=0.0,
      help="share of each UNet batch drawn from mixed-style composites (one scene, the caption's style inside a "
           "random mask, another style outside), so that the UNet learns a style can fill only a region, which "
           "the 4-channel blended inpainting loop needs; 0 = single-style images only, the bundled model")
    a("--composite_mask_weight", type=float, default=3.0, help="loss weight inside a composite's mask (default: 3)")
    a("--lr_restart", action="store_true",
      help="with --init_from: a fresh warmup + cosine schedule over the remaining steps, not the old one's tail")
    a("--checkpoint_every", type=int, default=250, help="steps between resumable checkpoints")
    a("--save_every", type=int, default=1000, help="steps between pipeline exports to --output")
    return p.parse_args(argv)


def main(args):
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(os.path.join(args.work_dir, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    tok_dir, tokenizer = work_tokenizer(args.work_dir, args.tokenizer)
    t0 = time.time()

    vae = make_vae()
    vae_path = os.path.join(args.work_dir, "vae.safetensors")
    if args.init_from and not os.path.exists(vae_path):     # continue from an exported pipeline's VAE
        vae.load_state_dict(AutoencoderKL.from_pretrained(args.init_from, subfolder="vae",
                                                          use_safetensors=True).state_dict())
        save_state(vae_path, {"vae": vae}, None, args.vae_steps)
    train_vae(vae, vae_path, args.vae_steps, args.vae_batch_size, args.vae_lr, args.kl_weight, args.seed,
              args.checkpoint_every)
    dec_path = os.path.join(args.work_dir, "decoder.safetensors")
    if args.init_from and not os.path.exists(dec_path):     # the exported VAE's decoder is already tuned
        save_state(dec_path, {"vae": vae}, None, args.decoder_steps)
    images, subjects = scene_bank(args.decoder_scenes, args.seed, os.path.join(args.work_dir, "scenes.safetensors"))
    tune_decoder(vae, images, subjects, args.decoder_steps, dec_path, args.decoder_lr, args.vae_batch_size,
                 seed=args.seed, checkpoint_every=args.checkpoint_every)
    vae.requires_grad_(False).eval()
    lat, st, su = latent_bank(vae, os.path.join(args.work_dir, "bank.safetensors"), args.bank_size, args.seed)
    scale = 1.0 / lat.std().item()
    if args.init_from:      # go on in the exported model's latent scale, whatever the bank's size
        scale = AutoencoderKL.load_config(args.init_from, subfolder="vae")["scaling_factor"]
    vae.register_to_config(scaling_factor=scale)
    lat = lat * scale                                            # unit-variance latents, as SD's 0.18215

    text_encoder, unet = make_text_encoder(tokenizer), make_unet(args.unet_channels)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=args.ema_decay)
    state_path = os.path.join(args.work_dir, "unet.safetensors")
    step, extra = 0, {"seconds": 0.0}
    if os.path.exists(state_path):
        step, extra = load_state(state_path, {"unet": unet, "text_encoder": text_encoder,
                                              "ema": ema.shadow_params}, opt)
        ema.optimization_step = step
        print(f"resumed UNet at step {step}")
    elif args.init_from:
        # another sitting without --work_dir's checkpoint: start from the exported (EMA) weights at the
        # step they reached; the optimizer's moments start afresh
        unet.load_state_dict(UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet",
                                                                   use_safetensors=True).state_dict())
        text_encoder.load_state_dict(
            CLIPTextModel.from_pretrained(args.init_from, subfolder="text_encoder", use_safetensors=True).state_dict())
        ema = EMAModel(params, decay=args.ema_decay)
        with open(os.path.join(args.init_from, "training.json")) as f:
            done = json.load(f)
        step = done["unet_steps_done"]
        extra = {"seconds": float(done["unet_seconds"]), "lr_from": step if args.lr_restart else 0}
        ema.optimization_step = step
        print(f"initialised from {args.init_from} at UNet step {step}")
    lr_from = extra.get("lr_from", 0)            # where the current learning-rate schedule began
    lr_sched = get_scheduler("cosine", opt, num_warmup_steps=args.warmup, num_training_steps=args.unet_steps - lr_from)
    for _ in range(step - lr_from):
        lr_sched.step()
    sched = noise_scheduler()
    rng = np.random.default_rng(args.seed * 1000 + step)
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, text encoder "
          f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f}M, bank {len(lat)} latents")
    t_start, seconds0 = time.time(), extra["seconds"]
    info = lambda: {"args": vars(args), "unet_steps_done": step, "unet_seconds": round(  # noqa: E731
        seconds0 + time.time() - t_start), "machine": f"{platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {'cuda' if torch.cuda.is_available() else 'cpu'}"}
    n_comp = int(round(args.composite_share * args.batch_size))     # composite rows per batch
    bar = tqdm(range(step, args.unet_steps), desc="unet", initial=step, total=args.unet_steps)
    unet.train()
    text_encoder.train()
    for step in bar:
        idx = torch.as_tensor(rng.integers(0, len(lat), args.batch_size - n_comp))
        caps = [caption_for(STYLES[st[i]], SUBJECTS[su[i]], rng) if rng.random() >= args.uncond_prob else ""
                for i in idx.tolist()]
        x0, weight = lat[idx], None
        if n_comp:       # the last n_comp rows are composites: the caption names the style inside the mask
            comp, masks, comp_caps = composite_batch(rng, images, subjects, n_comp, uncond_prob=args.uncond_prob)
            with torch.no_grad():
                x0 = torch.cat([x0, vae.encode(comp).latent_dist.mean * scale])
            caps += comp_caps
            weight = torch.ones(len(x0), 1, *x0.shape[2:])
            weight[-n_comp:] += (args.composite_mask_weight - 1) * to_latent(masks, x0.shape[-1])
        ids = tokenizer(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(x0),), generator=gen)
        pred = unet(sched.add_noise(x0, noise, t), t, text_encoder(ids)[0]).sample
        loss = min_snr_loss(pred, noise, sched, t, args.snr_gamma, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        ema.step(params)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.unet_steps:
            step = done
            save_state(state_path, {"unet": unet, "text_encoder": text_encoder, "ema": ema.shadow_params}, opt,
                       done, {"seconds": seconds0 + time.time() - t_start, "lr_from": lr_from})
        if done % args.save_every == 0 or done == args.unet_steps:
            step = done
            save_pipeline(args.output, tok_dir, vae, text_encoder, tokenizer, unet, ema, info())
    print(f"done in {time.time() - t0:.0f} s this sitting; pipeline in {args.output}")


if __name__ == "__main__":
    main(parse_args())
