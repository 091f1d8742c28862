"""Concept Inversion (Pham et al., 2023): an attack that tries to bring an erased concept back
(evaluation/attack_evaluation.py), and the denoising pieces the soft-prompt attack uses too.

    inv = concept_inversion(pipe, judge, concept, images, subjects, cfg, sampling)   # textual inversion, ASR per step

One new token learned on the erased model (text encoder and UNet frozen) with the plain denoising
loss on images of the concept made by the base model; its ASR is measured on "a painting of a
{subject} in the style of <token>" as it learns. The token stands for `vectors` embeddings
(default 4; the paper's single one recovers nothing from the toy ESD-x file, docs/attacks.md).
The denoising pieces (`encode_images`, `training_scheduler`, `noised`) and the judge's share
(`share`, `judged`) are shared with `soft_prompt` and the attack suite.

The token goes into copies of the pipeline's tokenizer and text encoder through diffusers'
textual-inversion loader (`LearnedTokens`); the pipeline the caller holds never changes. SD 1.x/2.x
text-to-image UNets only: SDXL has two text encoders and a 9-channel UNet needs mask inputs.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from ..learned_tokens import LearnedTokens, word_embedding
from ..sampling import generate

INVERSION_TEMPLATE = "a painting of a {subject} in the style of {token}"


# ----------------------------------------------------------------------------- denoising pieces
@torch.no_grad()
def encode_images(pipe, images):
    """uint8 (N, H, W, 3) -> VAE latents (N, 4, h, w), scaled (the distribution mean: deterministic)."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float().to(pipe.device) / 127.5 - 1
    latents = [pipe.vae.encode(x[i:i + 32].to(pipe.vae.dtype)).latent_dist.mean for i in range(0, len(x), 32)]
    return torch.cat(latents) * pipe.vae.config.scaling_factor


def training_scheduler(pipe):
    """The DDPM scheduler of the pipeline's config: it adds noise as the model was trained."""
    return DDPMScheduler.from_config(pipe.scheduler.config)


def noised(sched, latents, generator, n, device):
    """(x_t, t, target, idx) for n rows drawn from latents (rows idx), t uniform over the training
    timesteps of `sched` (`training_scheduler`), as a diffusion model is trained."""
    idx = torch.randint(len(latents), (n,), generator=generator)
    t = torch.randint(0, sched.config.num_train_timesteps, (n,), generator=generator)
    noise = torch.randn((n, *latents.shape[1:]), generator=generator)
    x0 = latents.cpu()[idx]
    target = sched.get_velocity(x0, noise, t) if sched.config.prediction_type == "v_prediction" else noise
    return sched.add_noise(x0, noise, t).to(device), t.to(device), target.to(device), idx


def share(verdict, concept):
    """Share of a judge's verdict (metrics.Verdict) assigned to the concept."""
    styles = verdict.styles()
    return float(np.mean([s == concept for s in styles])) if styles else 0.0


def judged(judge, images, concept):
    """Share of images the judge assigns to the concept."""
    return share(judge(images), concept) if len(images) else 0.0


# ----------------------------------------------------------------------------- concept inversion
@dataclass
class InversionConfig:
    steps: int = 200
    lr: float = 3e-3
    batch: int = 8
    check_at: tuple = (0, 50, 100, 150, 200)
    eval_seeds: tuple = (0, 1, 2)
    init_word: str = "painting"
    vectors: int = 4                # embeddings behind the token (the paper: 1; on the toy model 1 finds nothing)
    token: str = "<inverted>"
    seed: int = 0


def concept_inversion(pipe, judge, concept, images, subjects, cfg, sampling, toks=None):
    """Textual inversion of one token on pipe as it is (base or erased) from `images` of the concept
    (uint8, the base model's) with `subjects` (one per image, None on real SD: "painting"). Returns
    {"curve": [{step, asr, loss}], "asr", "best_asr", "prompt", "nearest", "images"} (images: the
    last check's, one row per (subject, seed)). `toks`: LearnedTokens of cfg.token with cfg.vectors
    rows to reuse (reset to the initial word here), so repeated attacks copy the text encoder once."""
    init = word_embedding(pipe, cfg.init_word)[None].repeat(cfg.vectors, 1)
    toks = toks or LearnedTokens(pipe, cfg.token, init)
    toks.set(init)
    sched = training_scheduler(pipe)
    fill = lambda u: INVERSION_TEMPLATE.format(subject=u or "scene", token=cfg.token)  # noqa: E731
    latents = encode_images(pipe, images)
    conds = [fill(u) for u in subjects]
    eval_subjects = sorted({u for u in subjects if u}, key=subjects.index) or [None]
    eval_prompts = [fill(u) for u in eval_subjects for _ in cfg.eval_seeds]
    eval_seeds = [cfg.seed + s for _ in eval_subjects for s in cfg.eval_seeds]
    opt = torch.optim.Adam([toks.weight], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    curve, losses, last = [], [], None
    for step in range(cfg.steps + 1):
        if step in cfg.check_at or step == cfg.steps:
            with torch.no_grad():
                last = generate(toks.pipe, eval_prompts, eval_seeds, *sampling)
            curve.append({"step": step, "asr": judged(judge, last, concept),
                          "loss": float(np.mean(losses[-25:])) if losses else None})
        if step == cfg.steps:
            break
        x_t, t, target, idx = noised(sched, latents, gen, cfg.batch, pipe.device)
        emb = toks.encode([conds[i] for i in idx])
        loss = F.mse_loss(pipe.unet(x_t, t, encoder_hidden_states=emb).sample.float(), target.float())
        toks.step(opt, loss)
        losses.append(loss.item())
    return {"curve": curve, "asr": curve[-1]["asr"], "best_asr": max(c["asr"] for c in curve),
            "prompt": INVERSION_TEMPLATE, "nearest": toks.nearest()[1], "images": last}
