"""The toy model's VAE: architecture, reconstruction training, and a decoder fine-tune on mixed styles.

Stage 1 (`train_vae`, run by train.py) learns to reconstruct single-style toy images. Such a decoder
cannot draw one style inside a region of another: a Van Gogh grid cell pasted into a photo of the same
scene comes back from encode -> decode as Van Gogh in only ~17% of cases, while the encoder's latents
of that cell decode as Van Gogh (95%) when Van Gogh latents surround them. Stage 2 (`tune_decoder`)
therefore fine-tunes the decoder alone on composites (one scene, two styles through a random mask):
the encoder is frozen, so latents, UNets and every erasure trained on them stay valid.

    python -m spatial_erasure.toyart.vae                     # tune models/toyart-sd/vae in place, resumable
    python -m spatial_erasure.toyart.vae --check_only        # composite-cell round-trip rates of the current VAE

Writes `results/toyart_decoder/decoder.json` (per-style rate at which a style pasted into a grid cell of
a photo is still that style after encode -> decode, before and after tuning; full-image round trip).
"""
import os
import shutil
import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm import tqdm

from .. import cli
from ..checkpoint import load_state, save_state
from ..masks import grid_masks
from ..distributed import process_device
from ..models import TOY_CLASSIFIER, TOY_MODEL
from ..reports import write_json
from .classifier import load_classifier, predict, region_style, to_tensor
from .composites import batch, scene_bank
from .painter import render, render_batch
from .world import RES, STYLES, SUBJECTS


def make_vae():
    # 3 blocks = 2 downsamples: 64x64x3 -> 16x16x4; no mid attention, so it is fully convolutional
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64),
                         layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=RES,
                         mid_block_add_attention=False)


def recon_loss(rec, x, weight=None):
    """L1 + MSE + L1 of the image gradients (sharp edges); `weight` (B, 1, H, W) weights pixels."""
    w = torch.ones_like(x[:, :1]) if weight is None else weight
    dy = lambda t: t[..., 1:, :] - t[..., :-1, :]  # noqa: E731
    dx = lambda t: t[..., :, 1:] - t[..., :, :-1]  # noqa: E731
    wy, wx = torch.maximum(w[..., 1:, :], w[..., :-1, :]), torch.maximum(w[..., :, 1:], w[..., :, :-1])
    mean = lambda e, m: (e * m).sum() / (m.sum() * e.shape[1])  # noqa: E731
    return (mean((rec - x).abs(), w) + mean((rec - x) ** 2, w) + mean((dy(rec) - dy(x)).abs(), wy)
            + mean((dx(rec) - dx(x)).abs(), wx))


def random_scene(rng):
    return STYLES[rng.integers(len(STYLES))], SUBJECTS[rng.integers(len(SUBJECTS))]


def train_vae(vae, state_path, steps, batch_size, lr, kl_weight, seed, checkpoint_every):
    """Stage 1: reconstruction on 32x32 crops (the VAE is fully convolutional) with an edge loss and a
    KL term of weight `kl_weight`; resumes from `state_path`, checkpointed every `checkpoint_every` steps."""
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0)
    step = 0
    if os.path.exists(state_path):
        step, _ = load_state(state_path, {"vae": vae}, opt)
        print(f"resumed VAE at step {step}")
    rng = np.random.default_rng(seed + step)
    bar = tqdm(range(step, steps), desc="vae", initial=step, total=steps)
    for step in bar:
        imgs = np.stack([render(*random_scene(rng), rng=rng) for _ in range(batch_size)])
        x = to_tensor(imgs)
        if step % 4:                                  # 3 of 4 steps on crops, 1 on full images
            i, j = rng.integers(0, RES - 32 + 1, 2) // 4 * 4
            x = x[:, :, i:i + 32, j:j + 32]
        post = vae.encode(x).latent_dist
        loss = recon_loss(vae.decode(post.sample()).sample, x) + kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if (step + 1) % checkpoint_every == 0 or step + 1 == steps:
            save_state(state_path, {"vae": vae}, opt, step + 1)
    return vae


def decoder_params(vae):
    return list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())


def tune_decoder(vae, images, subjects, steps, state_path, lr=3e-4, batch_size=32, mask_weight=2.0, seed=0,
                 checkpoint_every=100, time_budget=None):
    """Stage 2: fine-tune decoder + post_quant_conv on composites (encoder frozen, latents sampled as in
    training). Loss = recon_loss with the mask's pixels weighted `mask_weight`; cosine learning rate.
    Resumes from `state_path`; returns the number of steps done."""
    vae.requires_grad_(False)
    params = decoder_params(vae)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0)
    step = 0
    if os.path.exists(state_path):
        step, _ = load_state(state_path, {"vae": vae}, opt)
        print(f"resumed decoder at step {step}")
    start = step      # the schedule counts from the resumed step: no catch-up stepping before opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min((s + start) / steps, 1.0))))
    rng = np.random.default_rng([seed, step])
    gen = torch.Generator(vae.device).manual_seed(seed * 1000 + step)
    t0 = time.time()
    vae.train()
    bar = tqdm(range(step, steps), desc="decoder", initial=step, total=steps)
    for step in bar:
        x, masks, _ = batch(rng, images, subjects, batch_size, same_style=0.25, uncond_prob=0)
        x, masks = x.to(vae.device), masks.to(vae.device)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample(generator=gen)
        loss = recon_loss(vae.decode(z).sample, x, 1 + (mask_weight - 1) * masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        out_of_time = time_budget is not None and time.time() - t0 > time_budget
        if done % checkpoint_every == 0 or done == steps or out_of_time:
            save_state(state_path, {"vae": vae}, opt, done)
        if out_of_time:
            print(f"time budget of {time_budget:.0f} s spent at step {done}; rerun to go on")
            break
    else:
        done = steps
    vae.requires_grad_(False).eval()
    return done


@torch.no_grad()
def roundtrip(vae, x, batch_size=128):
    """Encode (latent mean) and decode a float batch in [-1, 1]; returns the same shape on the CPU, clamped."""
    out = [vae.decode(vae.encode(x[i:i + batch_size].to(vae.device, vae.dtype)).latent_dist.mean).sample
           for i in range(0, len(x), batch_size)]
    return torch.cat([o.float().clamp(-1, 1).cpu() for o in out])


@torch.no_grad()
def composite_check(vae, clf, images, background="photo"):
    """Each style pasted into each of the 10 grid masks of `background` images of the same scenes
    (images: (n, styles, H, W, 3) uint8). Per style, the share of regions the classifier calls that
    style: on the composite itself and after encode -> decode; plus full-image round-trip accuracy."""
    masks = grid_masks(RES)[:, 0] > 0.5                                   # (10, H, W)
    bg = images[:, STYLES.index(background)]
    report = {"pasted": {}, "roundtrip": {}, "full_image_roundtrip": {}}
    for k, style in enumerate(STYLES):
        comp = np.concatenate([np.where(m[None, ..., None].numpy(), images[:, k], bg) for m in masks])
        mk = masks.repeat_interleave(len(images), 0).numpy()
        x = to_tensor(comp)
        for name, y in (("pasted", x), ("roundtrip", roundtrip(vae, x))):
            report[name][style] = float((region_style(clf, y, mk) == k).mean())
        ps, _, _ = predict(clf, roundtrip(vae, to_tensor(images[:, k])))
        report["full_image_roundtrip"][style] = float((ps.argmax(1) == k).float().mean())
    report["cases_per_style"] = len(images) * len(masks)
    return report


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    cli.add_model_arg(p, TOY_MODEL, "toy pipeline folder whose vae/ is tuned in place")
    a("--work_dir", default="runs/toyart-decoder", help="checkpoint and scene bank; rerun to resume")
    cli.add_output_arg(p, "results/toyart_decoder", "folder for decoder.json")
    a("--steps", type=int, default=1500, help="decoder fine-tuning steps (default: %(default)s)")
    a("--batch_size", type=int, default=32, help="composites per step (default: %(default)s)")
    a("--lr", type=float, default=3e-4, help="AdamW peak learning rate, cosine to 0 (default: %(default)s)")
    a("--mask_weight", type=float, default=2.0, help="loss weight of pixels inside the mask (default: %(default)s)")
    a("--scenes", type=int, default=600, help="training layouts, each in every style (default: %(default)s)")
    a("--check_scenes", type=int, default=12, help="held-out layouts for the check (default: %(default)s)")
    cli.add_seed_arg(p, 0, "seed of data and noise")
    a("--time_budget", type=float, default=None, help="stop after this many seconds; rerun to go on")
    a("--check_only", action="store_true", help="only measure the current VAE, change nothing")
    cli.add_device_arg(p)
    return p.parse_args(argv)


def save_vae(vae, folder):
    """Replace folder/ with vae's weights (safetensors), atomically: tmp folder, then rename."""
    tmp = folder.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    vae.save_pretrained(tmp, safe_serialization=True)
    old = folder.rstrip("/") + ".old"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old)


def main(args):
    device = torch.device(process_device(args.device))
    vae_dir = os.path.join(args.base_model, "vae")
    if not os.path.exists(os.path.join(vae_dir, "config.json")):
        cli.fail(f"--base_model {args.base_model}: no vae/config.json there; pass a toy pipeline folder")
    vae = AutoencoderKL.from_pretrained(vae_dir, use_safetensors=True).to(device).eval()
    clf = load_classifier(TOY_CLASSIFIER)                  # on the CPU: roundtrip() returns CPU tensors
    held = np.stack([np.stack([render(s, u, seed=int(z)) for s in STYLES])
                     for u, z in zip(np.array(SUBJECTS)[np.arange(args.check_scenes) % len(SUBJECTS)],
                                     range(90_000, 90_000 + args.check_scenes))])
    report = {"model": args.base_model, "args": vars(args), "before": composite_check(vae, clf, held)}
    if not args.check_only:
        os.makedirs(args.work_dir, exist_ok=True)
        images, subjects = scene_bank(args.scenes, args.seed, os.path.join(args.work_dir, "scenes.safetensors"))
        state = os.path.join(args.work_dir, "decoder.safetensors")
        t0 = time.time()
        done = tune_decoder(vae, images, subjects, args.steps, state, args.lr, args.batch_size, args.mask_weight,
                            args.seed, time_budget=args.time_budget)
        report.update(steps_done=done, seconds_this_sitting=round(time.time() - t0), device=str(device))
        report["after"] = composite_check(vae, clf, held)
        if done < args.steps:
            print(f"{done}/{args.steps} steps; {vae_dir} left unchanged until the tuning is complete")
        else:
            save_vae(vae.cpu(), vae_dir)
            print(f"wrote {vae_dir}")
    images, _, st, _ = render_batch(450, seed=20_000)                  # toy_model_quality's round-trip bar, smaller
    ps, _, _ = predict(clf, roundtrip(vae.to(device), to_tensor(images)))
    report["roundtrip_style_acc_450"] = float((ps.argmax(1).numpy() == st).mean())
    last = report.get("after", report["before"])
    for name in ("before", "after"):
        if name in report:
            r = report[name]["roundtrip"]
            print(f"{name}: style kept in a grid cell after encode -> decode:",
                  {s.split()[-1]: round(v, 2) for s, v in r.items()}, f"mean {np.mean(list(r.values())):.2f}")
    report["mean_cell_roundtrip"] = float(np.mean(list(last["roundtrip"].values())))
    write_json(os.path.join(args.output, "decoder.json"), report)
    print(f"full-image round trip {report['roundtrip_style_acc_450']:.3f}; wrote {args.output}/decoder.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
