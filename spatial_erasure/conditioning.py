"""Conditioning of a batch of prompts, as the denoiser takes it (what each family's `encode` returns).

    cond = family.encode(pipe, prompts)     # spatial_erasure.families
    cond[idx], cond.repeat(n), Cond.cat([a, b])
"""
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.utils import logging as diffusers_logging

from .distributed import process_state

TEXT_LENGTH_KEY = "_max_sequence_length"    # a private model_index.json key diffusers itself ignores


def text_length(pipe, default):
    """The T5 sequence length a pipeline was trained with: its recorded `_max_sequence_length`
    (model_index.json, kept in pipe.config by models.load_pipeline; the toy SD3 records 8, the zero
    tokens standing in for T5), else `default`, the diffusers pipeline's own default."""
    return pipe.config.get(TEXT_LENGTH_KEY, default)


@dataclass
class Cond:
    """Denoiser conditioning for a batch: hidden states (B, L, D); SDXL adds pooled text (B, P) and time
    ids (B, 6); SD3 and Flux add pooled text (B, P)."""
    emb: torch.Tensor
    pooled: torch.Tensor = None
    time_ids: torch.Tensor = None

    def __len__(self):
        return len(self.emb)

    def __getitem__(self, idx):
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return Cond(pick(self.emb), pick(self.pooled), pick(self.time_ids))

    def repeat(self, n):
        """Each row repeated n times along the batch: (B, ...) -> (B * n, ...)."""
        rep = lambda t: None if t is None else t.repeat_interleave(n, 0)  # noqa: E731
        return Cond(rep(self.emb), rep(self.pooled), rep(self.time_ids))

    @staticmethod
    def cat(conds):
        join = lambda ts: None if ts[0] is None else torch.cat(ts)  # noqa: E731
        return Cond(join([c.emb for c in conds]), join([c.pooled for c in conds]), join([c.time_ids for c in conds]))

    def unet_kwargs(self):
        """The UNet's keyword arguments (SD, SDXL: spatial_erasure.families.sd / sdxl)."""
        kw = {"encoder_hidden_states": self.emb}
        if self.pooled is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kw


def is_cut(tokenizer, prompt):
    """True when `prompt` is longer than the text encoder reads (it is cut at its length)."""
    return len(tokenizer(prompt).input_ids) > tokenizer.model_max_length


def cut_prompts(tokenizer, prompts):
    """How many of the distinct `prompts` the text encoder cuts."""
    return sum(is_cut(tokenizer, p) for p in dict.fromkeys(prompts))


@contextmanager
def one_note_on_cut_prompts(pipe, prompts):
    """The pipeline logs every cut prompt of every batch (a wall of text on the toy model's 24 tokens):
    one line instead, then the pipeline's own warnings only from errors up."""
    n = cut_prompts(pipe.tokenizer, prompts) if getattr(pipe, "tokenizer", None) is not None else 0
    if n and process_state().is_main_process:
        print(f"note: {n} of {len(set(prompts))} prompts are longer than the text encoder's "
              f"{pipe.tokenizer.model_max_length} tokens and are cut there")
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
