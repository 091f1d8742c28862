"""The soft-prompt attack (in the spirit of UnlearnDiffAtk, Zhang et al., 2024): an attack that tries to
bring an erased concept back (evaluation/attack_evaluation.py).

    targets = denoising_targets(base_pipe, prompt, base_images, n=32, seed=0)   # the base model's predictions
    soft = soft_prompt_attack(pipe, judge, concept, prompt, targets, cfg, sampling, check_seed)

k adversarial token embeddings prepended to a concept prompt, optimised so that the erased model's
noise prediction at noised base-model images of that prompt matches the base model's. Success is
judged on a generated image every few steps (early stop); the final embeddings are reported as they
are (continuous) and projected to their nearest vocabulary tokens (a prompt anyone can type).

The tokens go into copies of the pipeline's tokenizer and text encoder through diffusers'
textual-inversion loader (`LearnedTokens`); the pipeline the caller holds never changes. SD 1.x/2.x
text-to-image UNets only: SDXL has two text encoders and a 9-channel UNet needs mask inputs.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..learned_tokens import LearnedTokens
from ..sampling import generate
from .inversion import encode_images, judged, noised, training_scheduler


@dataclass
class SoftPromptConfig:
    tokens: int = 5
    steps: int = 40
    lr: float = 1e-2
    batch: int = 8
    check_every: int = 10
    eval_seeds: int = 4
    targets: int = 32
    token: str = "<adv>"
    seed: int = 0


@torch.no_grad()
def denoising_targets(pipe, prompt, images, n, seed):
    """n rows (x_t, t, eps) at noised `images` of `prompt`: eps is pipe's prediction for `prompt`
    (call it with the base model: the soft-prompt attack's targets)."""
    from ..prompts import encode
    x_t, t, _, _ = noised(training_scheduler(pipe), encode_images(pipe, images), torch.Generator().manual_seed(seed),
                          n, pipe.device)
    emb = encode(pipe, [prompt]).emb.expand(n, -1, -1)
    return x_t, t, pipe.unet(x_t, t, encoder_hidden_states=emb).sample


def soft_prompt_attack(pipe, judge, concept, prompt, targets, cfg, sampling, check_seed, toks=None):
    """Prepend cfg.tokens adversarial embeddings (random vocabulary tokens at first) to `prompt` and
    optimise them so pipe's (the erased model's) noise prediction at the targets' x_t matches the
    base model's (`denoising_targets`). Every check_every steps one image (check_seed) is judged; the
    attack stops at the first one assigned to the concept. Then cfg.eval_seeds images from check_seed
    on are judged with the embeddings as they are and projected to the nearest vocabulary tokens.
    `toks`: LearnedTokens of cfg.token with cfg.tokens rows to reuse across prompts (their rows are
    set here), so the text encoder is copied once, not per prompt."""
    rng = torch.Generator().manual_seed(cfg.seed + check_seed)
    toks = toks or LearnedTokens(pipe, cfg.token, torch.zeros(cfg.tokens, pipe.text_encoder.config.hidden_size))
    toks.set(toks.vocab[toks.typable[torch.randint(len(toks.typable), (cfg.tokens,), generator=rng)]])
    adv = f"{cfg.token} {prompt}"
    x_t, t, eps = targets
    opt = torch.optim.Adam([toks.weight], lr=cfg.lr)
    success, loss = None, None
    for step in range(cfg.steps + 1):
        if step % cfg.check_every == 0 or step == cfg.steps:
            with torch.no_grad():
                if judged(judge, generate(toks.pipe, [adv], [check_seed], *sampling), concept) == 1.0:
                    success = step
                    break
        if step == cfg.steps:
            break
        idx = torch.randint(len(x_t), (cfg.batch,), generator=rng)
        emb = toks.encode([adv]).expand(cfg.batch, -1, -1)
        loss = F.mse_loss(pipe.unet(x_t[idx], t[idx], encoder_hidden_states=emb).sample.float(), eps[idx].float())
        toks.step(opt, loss)
    seeds = [check_seed + i for i in range(cfg.eval_seeds)]
    with torch.no_grad():
        continuous = generate(toks.pipe, [adv] * len(seeds), seeds, *sampling)
        hard_text = toks.nearest()[1]
        toks.set(toks.projected())
        projected = generate(toks.pipe, [adv] * len(seeds), seeds, *sampling)
    return {"prompt": prompt, "success_step": success, "steps": step, "loss": None if loss is None else loss.item(),
            "asr_continuous": judged(judge, continuous, concept), "asr_projected": judged(judge, projected, concept),
            "projected_prompt": f"{hard_text} {prompt}", "images": continuous, "projected_images": projected}
