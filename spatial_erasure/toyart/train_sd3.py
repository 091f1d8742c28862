"""Train the toy art world's Stable Diffusion 3 from scratch: an MMDiT (SD3Transformer2DModel) and two
CLIP text encoders with projection, over the frozen toy VAE's latents, by rectified flow.

(This trains a toy base model; erasure training is spatial_erasure.trainer.)
The result is a standard diffusers StableDiffusion3Pipeline folder (safetensors, no T5:
text_encoder_3 = tokenizer_3 = None) that loads offline with `spatial_erasure.load_pipeline(folder)`,
or `StableDiffusion3Pipeline.from_pretrained(folder, use_safetensors=True, text_encoder_3=None,
tokenizer_3=None)` (diffusers needs the two Nones passed, as for any SD3 without T5). The T5 part of
the prompt embeddings is zeros of length `--max_sequence_length`, as the pipeline builds it without
T5; the model is trained with a short one (8, not the pipeline's default 256, which costs 4x per
step), so every call must pass the same `max_sequence_length=`: training.json records it, and so does
model_index.json as `_max_sequence_length`, which load_pipeline keeps in pipe.config and this toolkit's
encoding and sampling pass (conditioning.text_length; a plain diffusers call passes it). Checkpoints
go to `--work_dir` every few minutes; rerunning the same command resumes there, bit for bit.

    OMP_NUM_THREADS=1 python -m spatial_erasure.toyart.train_sd3 --output models/toyart-sd3 --work_dir runs/toyart-sd3
"""
import json
import os
import platform
import shutil
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel, compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
from safetensors.torch import load_file
from tqdm import tqdm
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from .. import cli
from ..conditioning import TEXT_LENGTH_KEY
from ..checkpoint import load_state, replace_folder, save_state
from ..models import TOY_MODEL
from .train_sd import MAX_TOKENS, latent_bank, ship_tokenizer, work_tokenizer
from .world import RES, STYLES, SUBJECTS, caption_for


def make_text_encoder(tokenizer, width, layers):
    """A CLIP text encoder with projection (SD3's CLIP-L / CLIP-G at toy size); projection_dim = width, as in SD3."""
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width,
                         num_hidden_layers=layers, num_attention_heads=max(1, width // 32), projection_dim=width,
                         max_position_embeddings=MAX_TOKENS, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModelWithProjection(cfg)


def make_transformer(layers, heads, head_dim, text_dim):
    """SD3's MMDiT at toy size over 16x16x4 latents (8x8 = 64 image tokens of 2x2 patches); `text_dim` is the
    two CLIP widths summed: the joint-attention input (no padding up to T5's width) and the pooled projection."""
    model = SD3Transformer2DModel(sample_size=RES // 4, patch_size=2, in_channels=4, out_channels=4,
                                  num_layers=layers, attention_head_dim=head_dim, num_attention_heads=heads,
                                  joint_attention_dim=text_dim, caption_projection_dim=heads * head_dim,
                                  pooled_projection_dim=text_dim,
                                  pos_embed_max_size=RES // 4)   # up to 16x16 patches: 128 px images
    # DiT's adaLN-Zero (Peebles & Xie 2023): every block starts as the identity and the output as zero
    for m in model.modules():
        if isinstance(m, (AdaLayerNormZero, AdaLayerNormContinuous)):
            torch.nn.init.zeros_(m.linear.weight)
            torch.nn.init.zeros_(m.linear.bias)
    torch.nn.init.zeros_(model.proj_out.weight)
    torch.nn.init.zeros_(model.proj_out.bias)
    return model


def noise_scheduler(shift):
    """SD3's flow-matching Euler scheduler; its shifted timesteps and sigmas are both training's and sampling's."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def flow_loss(transformer, x0, noise, u, sched, prompt_embeds, pooled):
    """Rectified-flow loss as diffusers' train_dreambooth_sd3.py: x_t = (1 - sigma) x0 + sigma noise, target
    noise - x0; `u` in [0, 1) picks the scheduler's (shifted) timestep and sigma."""
    idx = (u * sched.config.num_train_timesteps).long()
    timesteps, sigmas = sched.timesteps[idx], sched.sigmas[idx].view(-1, 1, 1, 1)   # (B,), (B,1,1,1)
    x_t = (1.0 - sigmas) * x0 + sigmas * noise
    pred = transformer(hidden_states=x_t, timestep=timesteps, encoder_hidden_states=prompt_embeds,
                       pooled_projections=pooled, return_dict=False)[0]
    weight = compute_loss_weighting_for_sd3("logit_normal", sigmas)    # ones: the density already weights
    return (weight * F.mse_loss(pred, noise - x0, reduction="none")).mean()


def save_pipeline(output, tokenizer_dir, pipe, params, ema, info):
    """Write the pipeline folder `output` with the EMA weights, atomically (tmp folder + rename); both
    tokenizers are the classic CLIP folder `tokenizer_dir`."""
    ema.store(params)
    ema.copy_to(params)
    tmp = output.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2"):   # vocab.json + merges.txt, as train_sd.save_pipeline
        ship_tokenizer(tokenizer_dir, os.path.join(tmp, name))
    with open(os.path.join(tmp, "training.json"), "w") as f:
        json.dump(info, f, indent=1)
    replace_folder(tmp, output)
    ema.restore(params)


def init_weights(modules, folder):
    """Load `folder`'s transformer and text encoders into `modules` (same sizes, or one line saying so)."""
    for name, module in modules.items():
        path = os.path.join(folder, name, "model.safetensors" if name.startswith("text") else
                            "diffusion_pytorch_model.safetensors")
        if not os.path.exists(path):
            raise SystemExit(f"error: --init_from {folder} has no {name} weights ({path}); pass a folder this "
                             "script wrote")
        try:
            module.load_state_dict(load_file(path))
        except RuntimeError as e:
            raise SystemExit(f"error: --init_from {folder}: its {name} does not match these sizes "
                             f"({str(e).splitlines()[0]}); pass the sizes it was trained with") from None
    print(f"started from {folder}")


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    cli.add_output_arg(p, "models/toyart-sd3", "pipeline folder to write")
    a("--work_dir", default="runs/toyart-sd3", help="checkpoints and latent cache; rerun to resume")
    cli.add_seed_arg(p, 0, "seed for weights, data and noise")
    a("--vae", default=os.path.join(TOY_MODEL, "vae"), help="frozen VAE folder (the toy SD's)")
    a("--tokenizer", default=os.path.join(TOY_MODEL, "tokenizer"),
      help="CLIP tokenizer folder of both text encoders; when missing it is built "
           "(needs `pip install --no-deps open_clip_torch`)")
    a("--bank_size", type=int, default=40_000, help="procedural images encoded once (in chunks of 256)")
    a("--steps", type=int, default=4500, help="transformer + text encoder steps")
    a("--layers", type=int, default=6, help="joint transformer blocks")
    a("--heads", type=int, default=3, help="attention heads")
    a("--head_dim", type=int, default=64, help="channels per head (width = heads * head_dim)")
    a("--text_widths", type=int, nargs=2, default=[64, 128],
      help="widths of the two CLIP text encoders (multiples of 32, or below 32), also their projection dims")
    a("--text_layers", type=int, default=3, help="layers of each text encoder (the penultimate one's states are used)")
    a("--max_sequence_length", type=int, default=8,
      help="length of the zero T5 part of the prompt embeddings; sampling must pass the same value")
    a("--shift", type=float, default=1.0,
      help="flow-matching timestep shift (SD3: 3.0 at 1024 px; 64 image tokens need none)")
    a("--logit_mean", type=float, default=0.0, help="mean of the logit-normal timestep density")
    a("--logit_std", type=float, default=1.0, help="std of the logit-normal timestep density")
    a("--batch_size", type=int, default=64, help="images per step")
    a("--lr", type=float, default=3e-4, help="peak learning rate (cosine)")
    a("--warmup", type=int, default=300, help="learning-rate warmup steps")
    a("--uncond_prob", type=float, default=0.1, help="share of captions dropped to '' (for guidance)")
    a("--ema_decay", type=float, default=0.999, help="EMA decay of the saved weights")
    a("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0)) or None,
      help="torch CPU threads (default: $OMP_NUM_THREADS if set, else torch's own choice)")
    a("--checkpoint_every", type=int, default=250, help="steps between resumable checkpoints")
    a("--save_every", type=int, default=1000, help="steps between pipeline exports to --output")
    a("--init_from", default=None,
      help="a pipeline folder this script wrote: start from its (EMA) transformer and text encoders, with "
           "a fresh optimizer and lr schedule over --steps (a further stage; a checkpoint in --work_dir wins)")
    return p.parse_args(argv)


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(os.path.join(args.work_dir, "args.json"), "w") as f:
        json.dump(vars(args), f, indent=1)
    tok_dir, tokenizer = work_tokenizer(args.work_dir, args.tokenizer)
    t0 = time.time()

    vae = AutoencoderKL.from_pretrained(args.vae, use_safetensors=True).requires_grad_(False).eval()
    lat, st, su = latent_bank(vae, os.path.join(args.work_dir, "bank.safetensors"), args.bank_size, args.seed)
    # SD3's convention: the transformer sees (z - shift_factor) * scaling_factor, the pipeline decodes
    # z = latents / scaling_factor + shift_factor; here both make the bank zero-mean, unit-variance
    shift = lat.mean().item()
    scale = 1.0 / (lat - shift).std().item()
    vae.register_to_config(scaling_factor=scale, shift_factor=shift)
    lat = (lat - shift) * scale                                  # (N, 4, 16, 16)

    te1, te2 = (make_text_encoder(tokenizer, w, args.text_layers) for w in args.text_widths)
    transformer = make_transformer(args.layers, args.heads, args.head_dim, sum(args.text_widths))
    sched = noise_scheduler(args.shift)
    # the pipeline itself encodes the captions during training, so training and sampling embed alike
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=sched, vae=vae, text_encoder=te1,
                                    tokenizer=tokenizer, text_encoder_2=te2, tokenizer_2=tokenizer,
                                    text_encoder_3=None, tokenizer_3=None)
    pipe.register_to_config(**{TEXT_LENGTH_KEY: args.max_sequence_length})   # every later call passes it
    pipe.set_progress_bar_config(disable=True)
    modules = {"transformer": transformer, "text_encoder": te1, "text_encoder_2": te2}
    before = 0                    # steps of the stages before this one (--init_from's training.json)
    if args.init_from:
        init_weights(modules, args.init_from)
        with open(os.path.join(args.init_from, "training.json")) as f:
            prior = json.load(f)
        before = prior.get("steps_before", 0) + prior["steps_done"]
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-2)
    ema = EMAModel(params, decay=args.ema_decay)
    state_path = os.path.join(args.work_dir, "transformer.safetensors")
    step, extra = 0, {"seconds": 0.0}
    if os.path.exists(state_path):
        step, extra = load_state(state_path, {**modules, "ema": ema.shadow_params}, opt)
        ema.optimization_step = step
        print(f"resumed transformer at step {step}")
    lr_sched = get_scheduler("cosine", opt, num_warmup_steps=args.warmup, num_training_steps=args.steps)
    for _ in range(step):
        lr_sched.step()
    n_tr, n_te = (sum(p.numel() for p in m.parameters()) / 1e6 for m in (transformer, torch.nn.ModuleList([te1, te2])))
    print(f"transformer {n_tr:.2f}M params, text encoders {n_te:.2f}M, bank {len(lat)} latents, "
          f"T5 zeros {args.max_sequence_length}, {torch.get_num_threads()} torch threads")
    t_start, seconds0 = time.time(), extra["seconds"]
    info = lambda: {"args": vars(args), "steps_done": step, "seconds": round(  # noqa: E731
        seconds0 + time.time() - t_start), "max_sequence_length": args.max_sequence_length,
        "steps_before": before, "latent_shift_factor": shift, "latent_scaling_factor": scale,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"{'cuda' if torch.cuda.is_available() else 'cpu'}"}
    bar = tqdm(range(step, args.steps), desc="transformer", initial=step, total=args.steps)
    for m in modules.values():
        m.train()
    for step in bar:
        # every step draws from its own seeds, so a resumed run repeats an unbroken one exactly
        rng = np.random.default_rng([args.seed, step])
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.as_tensor(rng.integers(0, len(lat), args.batch_size))
        caps = [caption_for(STYLES[st[i]], SUBJECTS[su[i]], rng) if rng.random() >= args.uncond_prob else ""
                for i in idx.tolist()]
        # (B, 24 + max_sequence_length, sum(text_widths)): penultimate CLIP states side by side, then the zero
        # T5 part; pooled (B, sum(text_widths)): both projections
        prompt_embeds, _, pooled, _ = pipe.encode_prompt(caps, None, None, device="cpu",
                                                         do_classifier_free_guidance=False,
                                                         max_sequence_length=args.max_sequence_length)
        x0 = lat[idx]
        noise = torch.randn(x0.shape, generator=gen)
        u = compute_density_for_timestep_sampling("logit_normal", len(x0), args.logit_mean, args.logit_std,
                                                  generator=gen)
        loss = flow_loss(transformer, x0, noise, u, sched, prompt_embeds, pooled)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        ema.step(params)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % args.checkpoint_every == 0 or done == args.steps:
            step = done
            save_state(state_path, {**modules, "ema": ema.shadow_params}, opt, done,
                       {"seconds": seconds0 + time.time() - t_start})
        if done % args.save_every == 0 or done == args.steps:
            step = done
            save_pipeline(args.output, tok_dir, pipe, params, ema, info())
    print(f"done in {time.time() - t0:.0f} s this sitting; pipeline in {args.output}")


if __name__ == "__main__":
    main(parse_args())
