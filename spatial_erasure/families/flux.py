"""Flux.1 (dev, schnell; MMDiT with double- and single-stream blocks, flow matching).

- recognised by: a FluxTransformer2DModel denoiser (pipeline class Flux*);
- text: T5's sequence (encoder_hidden_states) and CLIP's pooled projection;
- denoiser: the transformer on 2x2-packed latents (B, h/2 * w/2, 4C) with image and text position
  ids, predicting the flow velocity; its timestep is sigma (t / 1000). Flux-dev is guidance-
  distilled: it takes the guidance scale as an input (`guidance`) and has no true unconditional
  branch; schnell (guidance_embeds False) takes none;
- train methods: the double-stream blocks' attention (attn), the text stream's key/value projections
  (add_k_proj, add_v_proj), EraseAnything's add_k_proj + add_q_proj, and the single-stream blocks;
- export names: diffusers' transformer module names.
"""
import re

import torch
from diffusers import FluxTransformer2DModel

from ..conditioning import Cond, one_note_on_cut_prompts, text_length
from . import sd3

KEY = "flux"
NAME = "Flux"
PIPELINE_PREFIXES = ("Flux",)
DENOISER = "transformer"
DENOISER_CLASS = FluxTransformer2DModel
PREDICTS = "velocity"
GUIDANCE = 3.5          # Flux-dev's distilled guidance input when x_t is sampled (its pipeline's default)
LOSS_GUIDANCE = 1.0     # ... and in the loss (the esd_flux forks' choice: guidance distilled out of the target)


def owns(denoiser):
    return isinstance(denoiser, FluxTransformer2DModel)


def architecture(transformer):
    """'flux-dev' (guidance embedding: distilled guidance) or 'flux-schnell'; '-fill' for Fill's inputs."""
    kind = "flux-dev" if transformer.config.get("guidance_embeds") else "flux-schnell"
    return kind + ("-fill" if transformer.config.in_channels > 64 else "")


@torch.no_grad()
def encode(pipe, prompts, resolution=None, max_sequence_length=None):
    """Cond(T5 sequence (B, L, D), CLIP pooled (B, P)) as FluxPipeline encodes a prompt, on pipe.device."""
    max_sequence_length = max_sequence_length or text_length(pipe, 512)
    with one_note_on_cut_prompts(pipe, prompts):
        emb, pooled, _ = pipe.encode_prompt(prompts, None, device=pipe.device, num_images_per_prompt=1,
                                            max_sequence_length=max_sequence_length)
    return Cond(emb, pooled)



def call_kwargs(pipe):
    """What every call of the pipeline passes: the T5 length it was trained with (conditioning.text_length)."""
    return {"max_sequence_length": text_length(pipe, 512)}


def pack(x):
    """Latents (B, C, h, w) -> the transformer's tokens (B, h/2 * w/2, 4C) (FluxPipeline._pack_latents)."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)


def pipeline_latents(x):
    """Initial noise (B, C, h, w) as FluxPipeline's `latents=` takes it: packed (B, h/2 * w/2, 4C)."""
    return pack(x)


def unpack(tokens, h, w):
    """The inverse of pack: (B, h/2 * w/2, 4C) -> (B, C, h, w)."""
    b, _, c4 = tokens.shape
    return tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c4 // 4, h, w)


def image_ids(h, w, device, dtype):
    """Position ids (h/2 * w/2, 3) of the packed latent tokens: (0, row, column)."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] += torch.arange(h // 2)[:, None]
    ids[..., 2] += torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def predict(transformer, x, t, cond, params=None, sampling=False, guidance=None):
    """The velocity at latents x (B, C, h, w), timestep t (a scalar or (B,), in [0, 1000]), as latents;
    Flux-dev's distilled guidance input is `guidance`, else GUIDANCE when `sampling` x_t and
    LOSS_GUIDANCE in the loss (schnell takes none); `params` overrides weights."""
    guidance = guidance if guidance is not None else GUIDANCE if sampling else LOSS_GUIDANCE
    b, _, h, w = x.shape
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(b) / 1000
    kwargs = {"hidden_states": pack(x), "timestep": t, "encoder_hidden_states": cond.emb,
              "pooled_projections": cond.pooled, "img_ids": image_ids(h, w, x.device, x.dtype),
              "txt_ids": torch.zeros(cond.emb.shape[1], 3, device=x.device, dtype=x.dtype), "return_dict": False}
    if transformer.config.get("guidance_embeds"):
        kwargs["guidance"] = torch.full((b,), float(guidance), device=x.device, dtype=torch.float32)
    if params is None:
        out = transformer(**kwargs)[0]
    else:
        out = torch.func.functional_call(transformer, params, (), kwargs, strict=False)[0]
    return unpack(out, h, w)


def _double(*parts):
    """A predicate: parameters of the double-stream blocks' attention projections named in `parts`."""
    return lambda name, mod: name.startswith("transformer_blocks.") and any(f".attn.{p}." in name for p in parts)


TRAIN_METHODS = {
    "esd-x": ("every Linear of every attention module (attn) of the double- and single-stream blocks "
              "(the esd_flux forks' esd-x)", lambda name, mod: ".attn." in name and isinstance(mod, torch.nn.Linear)),
    "esd-x-strict": ("the double-stream blocks' text key and value projections (attn.add_k_proj, add_v_proj): the "
                     "analogue of SD's attn2.to_k / to_v", _double("add_k_proj", "add_v_proj")),
    "eraseanything": ("the double-stream blocks' attn.add_k_proj and add_q_proj (EraseAnything, ICML 2025)",
                      _double("add_k_proj", "add_q_proj")),
    "esd-x-text": ("the double-stream blocks' text-stream attention (add_q_proj, add_k_proj, add_v_proj, "
                   "to_add_out)", _double("add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")),
    "esd-u": ("every parameter outside attention", lambda name, mod: ".attn." not in name),
    "esd-all": ("every transformer parameter", lambda name, mod: True),
}
KEY_VALUE = (".attn.add_k_proj.", ".attn.add_v_proj.")
PROBE = "transformer_blocks.0"


CLOSED_FORM_KV = False    # as SD3: the text tokens are modulated per timestep before add_k_proj


INPAINTS = False          # text-to-image as loaded (its inpainting pipelines: not yet)


def native_resolution(pipe):
    return pipe.default_sample_size * pipe.vae_scale_factor


def resolution_step(pipe):
    return pipe.vae_scale_factor * 2              # 2x2 latent patches


def latent_channels(transformer):
    return transformer.config.in_channels // 4


def kohya_module(module, config):
    """diffusers' own module names."""
    return module


def base_version(transformer):
    return {"ss_base_model_version": "flux1", "modelspec.architecture": f"{architecture(transformer)}/lora",
            "modelspec.sai_model_spec": "1.0.0"}


# Weight-change reports (evaluation/weight_change_analysis.py): the real-size architecture the counts
# are shown against, and the groups a tensor name falls in: double-stream block N ('double.N'),
# single-stream ('single.N'), else 'other'; the image stream's to_q/k/v/out, the text stream's
# add_q/k/v_proj and to_add_out.
REFERENCE = "flux-dev"
BLOCKS = ("double", "single", "other")
PROJECTIONS, projection_of = sd3.PROJECTIONS, sd3.projection_of   # the same attention module names as SD3's


def block_of(name):
    """'transformer_blocks.3...' -> 'double.3', 'single_transformer_blocks.5...' -> 'single.5', else 'other'."""
    m = re.match(r"(single_)?transformer_blocks\.(\d+)\.", name)
    return f"{'single' if m.group(1) else 'double'}.{m.group(2)}" if m else "other"
