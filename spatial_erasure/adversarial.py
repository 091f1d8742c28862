"""Adversarial erasure (`--robust`), in the spirit of AdvUnlearn (Zhang et al., 2024), at a fraction
of its cost.

    adversary = Adversary(pipe, ["Vincent van Gogh"], AdversaryConfig())
    adv = adversary.attack(student, x, t, cases, eps_c)    # Cond of the adversarial prompts for these rows

Every `every` iterations, a few steps (`steps`) of the attack suite's soft-prompt attack
(attacks.soft_prompt.soft_prompt_attack): `tokens` free embeddings prepended to each concept's prompt,
"<adv> {concept}", optimised so that the student's (the erased model's) prediction at the
training x_t matches the frozen model's concept prediction eps(x_t, c), i.e. so that it paints the
concept again. The embeddings and their Adam state persist from one attack to the next (warm
start), so a few steps per attack follow the student as it changes. The trainer then also erases
from the adversarial prompts: the student prompted with them is regressed onto the same ESD target.

Only the embedding rows get gradients (`torch.autograd.grad`: the trained UNet tensors accumulate
nothing from the attack); the tokens live in copies of the tokenizer and text encoder
(learned_tokens.LearnedTokens), so the pipeline itself never changes. SD 1.x/2.x UNets (text-to-image
and 9-channel inpainting: `student` takes the mask inputs with it).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .learned_tokens import LearnedTokens, check_supported
from .prompts import Cond


@dataclass
class AdversaryConfig:
    tokens: int = 5          # adversarial embeddings prepended to the concept prompt (the suite's soft prompt: 5)
    steps: int = 4           # attack steps per attack
    every: int = 2           # attack every this many iterations (the adversarial row trains every iteration)
    lr: float = 1e-2         # Adam on the embeddings (the suite's soft prompt: 1e-2)
    weight: float = 0.5      # weight of the adversarial row (toy model: 1.0 cost Leonardo 22%, docs/results.md)
    token: str = "<adv>"
    seed: int = 0


class Adversary:
    """The inner attack's state: LearnedTokens with cfg.tokens rows (random vocabulary tokens at
    first), one adversarial prompt per case (`prompts`: each case's concept prompt), the Adam state
    that warm-starts each attack, and counters for the training report."""

    def __init__(self, pipe, prompts, cfg):
        self.cfg, self.calls, self.attack_steps, self.losses = cfg, 0, 0, []
        gen = torch.Generator().manual_seed(cfg.seed)
        self.toks = LearnedTokens(pipe, cfg.token, torch.zeros(cfg.tokens, pipe.text_encoder.config.hidden_size),
                                  inpaint=True)
        self.toks.set(self.toks.vocab[self.toks.typable[torch.randint(len(self.toks.typable), (cfg.tokens,),
                                                                        generator=gen)]])
        self.texts = [f"{cfg.token} {p}" for p in prompts]
        self.opt = torch.optim.Adam([self.toks.weight], lr=cfg.lr)

    def attack_rows(self, batch):
        """UNet rows the attack runs per iteration on average (a student forward and backward each)."""
        return batch * self.cfg.steps / self.cfg.every

    def encode(self, cases):
        return Cond(self.toks.encode([self.texts[c] for c in cases.tolist()]))

    def attack(self, student, x, t, cases, eps_c):
        """Every cfg.every calls, cfg.steps attack steps on the rows (x, t) of `cases` (indices into
        `prompts`): pull student(x, t, adversarial prompt) toward eps_c, the frozen concept prediction. Returns the
        adversarial prompts' encoding for these rows (no gradient), for the erasure step."""
        if self.calls % self.cfg.every == 0:
            for _ in range(self.cfg.steps):
                loss = F.mse_loss(student(x, t, self.encode(cases)).float(), eps_c.float())
                (grad,) = torch.autograd.grad(loss, [self.toks.weight])
                self.toks.weight.grad = grad * self.toks.rows.to(grad.device, grad.dtype)
                self.opt.step()
                self.losses.append(loss.item())
                self.attack_steps += 1
        self.calls += 1
        with torch.no_grad():
            return self.encode(cases)

    def report(self):
        """For the training report: attack steps run, the attack loss at its start and end, and the hard
        prompt nearest the final embeddings."""
        first, last = self.losses[:10], self.losses[-10:]
        mean = lambda v: round(sum(v) / len(v), 6) if v else None  # noqa: E731
        return {"robust_attack_steps": self.attack_steps, "robust_attack_loss_first10": mean(first),
                "robust_attack_loss_last10": mean(last), "robust_nearest_prompt": self.toks.nearest()[1]}


def make_adversary(pipe, prompts, config):
    """The Adversary of `config` (training_flags.adversary_config: the --robust flags) on `prompts`, or
    None when config is None (no --robust). Build it before the text encoder is offloaded: its copy
    stays on the device."""
    if config is None:
        return None
    check_supported(pipe, inpaint=True, fix="pass --no-robust, or an SD 1.x/2.x base model")
    return Adversary(pipe, prompts, config)
