"""New tokens learned in copies of a pipeline's tokenizer and text encoder (diffusers' multi-vector
textual inversion): what Concept Inversion and the soft-prompt attack learn (`attacks.inversion`,
`attacks.soft_prompt`), and what adversarial erasure's inner attack learns (`adversarial`, --robust).
The pipeline the caller holds never changes. SD 1.x/2.x text encoders only (`check_supported`).
"""
import copy

import torch
import torch.nn.functional as F
from diffusers.utils import logging as diffusers_logging
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .errors import InputError
from .models import architecture


def check_supported(pipe, inpaint=False, fix="pass --attacks with prompt attacks only, or an SD 1.x/2.x base model"):
    """The learned-token attacks need one text encoder and a 4-channel text-to-image UNet (with
    `inpaint`, --robust's inner attack, a 9-channel SD-inpainting UNet too); `fix` ends the error."""
    arch = architecture(pipe.unet)
    if arch != "sd" and not (inpaint and arch == "sd-inpaint"):
        raise InputError(f"the inversion and soft-prompt attacks support SD 1.x/2.x text-to-image UNets, not {arch}; "
                         + fix)


class LearnedTokens:
    """k new tokens named `token`, `token`_1, ... (diffusers' multi-vector textual inversion) in copies
    of the pipeline's tokenizer and text encoder; `.pipe` shares every other component with `pipe`, so
    an erasure applied to pipe.unet applies here too. The new embedding rows are the only weights
    with gradients (`step` zeroes every other row's gradient)."""

    def __init__(self, pipe, token, init, inpaint=False):
        check_supported(pipe, inpaint)
        tokenizer, text_encoder = copy.deepcopy(pipe.tokenizer), copy.deepcopy(pipe.text_encoder)
        text_encoder.requires_grad_(False)
        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()      # from_pipe warns about fp32 module lists
        try:
            self.pipe = type(pipe).from_pipe(pipe, tokenizer=tokenizer, text_encoder=text_encoder)
        finally:
            diffusers_logging.set_verbosity(level)
        self.pipe.set_progress_bar_config(disable=True)
        self.vocab_size = len(tokenizer)
        special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
        self.typable = torch.tensor([i for i in range(self.vocab_size) if i not in special])
        self.pipe.load_textual_inversion(init.detach().clone(), token=token)
        names = [token] + [f"{token}_{i}" for i in range(1, len(init))]
        self.token, self.ids = token, torch.tensor(tokenizer.convert_tokens_to_ids(names))
        self.weight = text_encoder.get_input_embeddings().weight
        self.weight.requires_grad_(True)
        self.vocab = self.weight[:self.vocab_size].detach().clone()
        self.rows = torch.zeros(len(self.weight), 1, dtype=torch.bool)
        self.rows[self.ids] = True

    @property
    def vectors(self):
        return self.weight[self.ids].detach().clone()

    @torch.no_grad()
    def set(self, vectors):
        self.weight[self.ids] = vectors.to(self.weight.dtype)

    def encode(self, prompts):
        """Text embeddings (B, L, D) of prompts naming the token, with gradients to its rows."""
        emb, _ = self.pipe.encode_prompt(list(prompts), device=self.pipe.device, num_images_per_prompt=1,
                                         do_classifier_free_guidance=False)
        return emb

    def step(self, optimizer, loss):
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.weight.grad.mul_(self.rows.to(self.weight.grad.device))
        optimizer.step()

    def nearest(self, vectors=None):
        """(token ids, text): the typable vocabulary tokens nearest (cosine) to each vector: the hard prompt."""
        v = self.vectors if vectors is None else vectors
        cand = self.vocab[self.typable].to(v.device)
        ids = self.typable[(F.normalize(v, dim=-1) @ F.normalize(cand, dim=-1).T).argmax(1).cpu()]
        return ids, readable("".join(self.pipe.tokenizer.convert_ids_to_tokens(ids.tolist())))

    def projected(self):
        """The vocabulary embeddings of `nearest`: set them to evaluate the hard prompt exactly (the same
        token ids at the same positions, whatever BPE would make of the text)."""
        return self.vocab[self.nearest()[0]]


BYTE_OF = {v: k for k, v in bytes_to_unicode().items()}     # CLIP BPE's byte symbols -> bytes


def readable(tokens):
    """CLIP BPE token strings joined ('night</w>gogh</w>Ġx') as text: word ends as spaces, byte
    symbols as the bytes they stand for, what does not print as U+FFFD. Idempotent on plain text."""
    raw = bytes(BYTE_OF.get(c, 32) for c in tokens.replace("</w>", " "))
    text = raw.decode("utf-8", errors="replace")
    return " ".join("".join(c if c.isprintable() else "\ufffd" for c in text).split())


def word_embedding(pipe, word):
    """The input embedding of `word`'s first token (the usual textual-inversion initialisation)."""
    ids = pipe.tokenizer(word, add_special_tokens=False).input_ids
    return pipe.text_encoder.get_input_embeddings().weight[ids[0]].detach().clone()
