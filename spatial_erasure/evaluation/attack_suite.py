"""The attack suite on one base pipeline (evaluation/attack_evaluation.py): attack success rate (ASR)
before and after every attack, for the base model and each erasure file, and what each erased
model paints instead of the concept.

    suite = Suite(pipe, judge, SuiteConfig(concept="Vincent van Gogh"), folder)   # the base model's images
    row = suite.run("base")                      # then suite.run(name, erasure_path) per file

ASR: the share of attacked generations the judge assigns to the erased concept. "none" is the
concept prompts themselves (the trainers' phrasings x subjects x seeds); every prompt attack kind
has its own fixed prompts (spatial_erasure.attacks); "inversion" is Concept Inversion's ASR after
its last step ("inversion_best": the best check); "soft_prompt" the soft-prompt attack's ASR with
continuous embeddings, "soft_prompt_projected" with the nearest vocabulary tokens, over
soft_prompts prompts x eval seeds. `worst` is the largest ASR over the attacks.

Images of fixed prompts are cached (metrics.cached_generate) and each model's results are saved
as it finishes (folder/models/NAME.json), so an interrupted run resumes at the next model.
"""
import dataclasses
import hashlib
import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from ..attacks.inversion import InversionConfig, concept_inversion, judged, share
from ..attacks.prompt_sets import ATTACK_KINDS, concept_pairs, prompt_attacks
from ..attacks.soft_prompt import SoftPromptConfig, denoising_targets, soft_prompt_attack
from ..erasure_file import erased, file_hash
from ..errors import InputError
from ..learned_tokens import LearnedTokens, check_supported
from ..reports import save_png, write_json
from ..worlds import TOY, World
from .metrics import cached_generate
from .substitutes import substitutes

LEARNED = {"inversion": "Concept Inversion: one token learned on the model (textual inversion)",
           "soft_prompt": "k adversarial token embeddings prepended to concept prompts (UnlearnDiffAtk-style)"}
ATTACKS = {**ATTACK_KINDS, **LEARNED}


@dataclass
class SuiteConfig:
    concept: str
    attacks: tuple = tuple(ATTACKS)
    world: World = TOY              # worlds.world_of(pipe)
    per_kind: int = 12              # images per prompt-attack kind
    pairs: int = 30                 # concept prompts (with neutral twins) before any attack
    pair_seeds: int = 3             # seeds per concept prompt
    inversion_images: int = 24      # base images of the concept Concept Inversion learns from
    soft_prompts: int = 6           # prompts the soft-prompt attack is run on
    soft_on: str = "concept"        # concept: the concept prompt (UnlearnDiffAtk); neutral: its twin
    seed: int = 0
    steps: int = 20
    guidance: float = 5.0
    inversion: InversionConfig = field(default_factory=InversionConfig)
    soft: SoftPromptConfig = field(default_factory=SoftPromptConfig)

    def key(self):
        """A hash of every setting: a saved model result is reused only under the same settings (the world
        as the boolean `toy` it was first recorded as)."""
        settings = {**dataclasses.asdict(dataclasses.replace(self, world=None)), "toy": self.world.name == "toy"}
        del settings["world"]
        return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


class Suite:
    """The prompts, seeds and base-model material every model is attacked with (built once)."""

    def __init__(self, pipe, judge, cfg, folder, log=print):
        self.pipe, self.judge, self.cfg, self.folder, self.log = pipe, judge, cfg, folder, log
        self.sampling = (cfg.steps, cfg.guidance)
        if {"inversion", "soft_prompt"} & set(cfg.attacks):
            check_supported(pipe)
        self.sets = prompt_attacks(cfg.concept, cfg.world, cfg.per_kind, cfg.seed, cfg.attacks)
        self.pairs = concept_pairs(cfg.concept, cfg.world, cfg.pairs, cfg.seed)
        n = cfg.pair_seeds
        self.pair_prompts = [p for p, _, _ in self.pairs for _ in range(n)]
        self.twin_prompts = [z for _, z, _ in self.pairs for _ in range(n)]
        self.pair_subjects = [u for _, _, u in self.pairs for _ in range(n)]
        self.pair_seeds = [cfg.seed + i for i in range(len(self.pair_prompts))]
        # the base model's neutral twins with the pairs' seeds and with other seeds: the seed spread
        twins = cached_generate(pipe, self.twin_prompts, self.pair_seeds, self.images, "base", *self.sampling,
                                desc="base: neutral twins")
        twins_b = cached_generate(pipe, self.twin_prompts, [s + 100_000 for s in self.pair_seeds], self.images,
                                  "base", *self.sampling, desc="base: twins, other seeds")
        self.twins = (twins, twins_b, judge(twins), judge(twins_b))
        self.base_concept = cached_generate(pipe, self.pair_prompts, self.pair_seeds, self.images, "base",
                                            *self.sampling, desc="base: concept prompts")
        self.inversion_data, self.soft_targets, self.learned = None, [], {}
        if "inversion" in cfg.attacks:   # the base model's images the judge recognises as the concept
            styles = judge(self.base_concept).styles()
            keep = [i for i, s in enumerate(styles) if s == cfg.concept][:cfg.inversion_images]
            if not keep:
                raise InputError(f"the base model paints no image the judge recognises as {cfg.concept}; "
                                 "Concept Inversion has nothing to learn from; leave inversion out of --attacks")
            self.inversion_data = (self.base_concept[keep], [self.pair_subjects[i] for i in keep])
        if "soft_prompt" in cfg.attacks:  # base predictions at noised base images of each concept prompt
            for j, (prompt, twin, _) in enumerate(self.pairs[:cfg.soft_prompts]):
                seeds = [cfg.seed + 60_000 + 10 * j + r for r in range(4)]
                images = cached_generate(pipe, [prompt] * 4, seeds, self.images, "base", *self.sampling)
                attacked = prompt if cfg.soft_on == "concept" else twin
                self.soft_targets.append((attacked, denoising_targets(pipe, prompt, images, cfg.soft.targets,
                                                                      cfg.seed + j)))

    def tokens(self, token, rows):
        """The suite's LearnedTokens for `token` (one text-encoder copy per attack kind, reused for every
        prompt and model: the erasure lives in the shared UNet, the rows are reset by each attack)."""
        if token not in self.learned:
            self.learned[token] = LearnedTokens(self.pipe, token,
                                                torch.zeros(rows, self.pipe.text_encoder.config.hidden_size))
        return self.learned[token]

    @property
    def images(self):
        return os.path.join(self.folder, "images")

    def run(self, name, path=None, resume=True):
        """Every attack on the base model (path None) or with the erasure file at `path` applied."""
        saved = os.path.join(self.folder, "models", f"{name}.json")
        key = {"settings": self.cfg.key(), "file": path and file_hash(path)}
        if resume and os.path.exists(saved):
            with open(saved) as f:
                old = json.load(f)
            if old.get("key") == key:
                self.log(f"{name}: reused {saved}")
                return old
        with erased(self.pipe, path) if path else nullcontext():
            row = self._attack(name)
        row["key"] = key
        write_json(saved, row)
        return row

    def _example(self, name, attack, image):
        save_png(image, os.path.join(self.folder, "examples", name, f"{attack}.png"))

    def _attack(self, name):
        cfg, pipe, judge = self.cfg, self.pipe, self.judge
        asr, seconds, detail = {}, {}, {}
        t0 = time.time()
        concept = cached_generate(pipe, self.pair_prompts, self.pair_seeds, self.images, name, *self.sampling,
                                  desc=f"{name}: concept prompts")
        verdict = judge(concept)
        asr["none"] = share(verdict, cfg.concept)
        twins, twins_b, v_twins, v_twins_b = self.twins
        detail["substitutes"] = substitutes(verdict, v_twins, v_twins_b, self.pair_subjects, concept, twins,
                                            twins_b)
        self._example(name, "none", concept[0])
        seconds["none"] = time.time() - t0
        for i, (kind, prompts) in enumerate(self.sets.items()):
            t0 = time.time()
            seeds = [cfg.seed + 10_000 * (i + 1) + j for j in range(len(prompts))]
            images = cached_generate(pipe, [p.prompt for p in prompts], seeds, self.images, name, *self.sampling,
                                     desc=f"{name}: {kind}")
            asr[kind] = judged(judge, images, cfg.concept)
            self._example(name, kind, images[0])
            seconds[kind] = time.time() - t0
        if self.inversion_data is not None:
            t0 = time.time()
            inv = concept_inversion(pipe, judge, cfg.concept, *self.inversion_data, cfg.inversion, self.sampling,
                                    self.tokens(cfg.inversion.token, cfg.inversion.vectors))
            asr["inversion"], asr["inversion_best"] = inv["asr"], inv["best_asr"]
            detail["inversion"] = {k: inv[k] for k in ("curve", "prompt", "nearest")}
            self._example(name, "inversion", inv["images"][0])
            seconds["inversion"] = time.time() - t0
            self.log(f"{name}: inversion ASR " + ", ".join(f"{c['step']}: {c['asr']:.2f}" for c in inv["curve"]))
        if self.soft_targets:
            t0 = time.time()
            toks = self.tokens(cfg.soft.token, cfg.soft.tokens)
            runs = [soft_prompt_attack(pipe, judge, cfg.concept, prompt, targets, cfg.soft, self.sampling,
                                       cfg.seed + 50_000 + j, toks)
                    for j, (prompt, targets) in enumerate(self.soft_targets)]
            asr["soft_prompt"] = float(np.mean([r["asr_continuous"] for r in runs]))
            asr["soft_prompt_projected"] = float(np.mean([r["asr_projected"] for r in runs]))
            detail["soft_prompt"] = {
                "success": float(np.mean([r["success_step"] is not None for r in runs])),
                "runs": [{k: r[k] for k in ("prompt", "success_step", "steps", "loss", "asr_continuous",
                                           "asr_projected", "projected_prompt")} for r in runs]}
            self._example(name, "soft_prompt", runs[0]["images"][0])
            self._example(name, "soft_prompt_projected", runs[0]["projected_images"][0])
            seconds["soft_prompt"] = time.time() - t0
        attacked = [v for k, v in asr.items() if k not in ("none", "inversion_best")]
        asr["worst"] = max(attacked) if attacked else asr["none"]
        self.log(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in asr.items()))
        return {"model": name, "asr": asr, "seconds": {k: round(v, 1) for k, v in seconds.items()}, **detail}
