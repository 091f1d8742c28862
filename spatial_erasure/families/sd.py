"""Stable Diffusion 1.x / 2.x (and SD-inpainting's 9-channel UNet): the family the reference ESD
was written for.

- recognised by: a UNet2DConditionModel without SDXL's added time embedding;
- text: one CLIP encoder's last hidden states (pipe.encode_prompt);
- denoiser: the UNet, predicting eps (or v for SD 2.x-v, as its scheduler says), stepped by the
  pipeline's DDIM/DDPM/Euler scheduler;
- train methods: the reference ESD's, on cross-attention (attn2);
- export names: diffusers' own module names (kohya trains SD 1.x/2.x LoRAs under them).
"""
import re

import torch
from diffusers import UNet2DConditionModel

from ..conditioning import Cond, one_note_on_cut_prompts

KEY = "sd"
NAME = "Stable Diffusion 1.x/2.x"
PIPELINE_PREFIXES = ("StableDiffusionPipeline", "StableDiffusionInpaintPipeline", "StableDiffusionImg2ImgPipeline")
DENOISER = "unet"
DENOISER_CLASS = UNet2DConditionModel
PREDICTS = "eps"


def owns(denoiser):
    """A UNet2DConditionModel without SDXL's added time embedding."""
    return isinstance(denoiser, UNet2DConditionModel) and denoiser.config.get("addition_embed_type") != "text_time"


def architecture(unet):
    """'sd', or 'sd-inpaint' for a 9-channel UNet (latent, mask, masked-image latent)."""
    return "sd" + ("-inpaint" if unet.config.in_channels == 9 else "")


@torch.no_grad()
def encode(pipe, prompts, resolution=None):
    """Cond(hidden states) of the pipeline's CLIP text encoder, on pipe.device."""
    with one_note_on_cut_prompts(pipe, prompts):
        emb, _ = pipe.encode_prompt(prompts, device=pipe.device, num_images_per_prompt=1,
                                    do_classifier_free_guidance=False)
    return Cond(emb)


def _in(part):
    return lambda name, mod: part in f".{name}"


# name -> (description, predicate on (parameter name, owning module)); the CLI's choices come from here
TRAIN_METHODS = {
    "esd-x": ("every Linear weight and bias of cross-attention (attn2)",
              lambda name, mod: ".attn2." in f".{name}" and isinstance(mod, torch.nn.Linear)),
    "esd-x-strict": ("cross-attention key and value projections (attn2.to_k, attn2.to_v)",
                     lambda name, mod: ".attn2.to_k." in f".{name}" or ".attn2.to_v." in f".{name}"),
    "esd-u": ("every parameter outside cross-attention", lambda name, mod: ".attn2." not in f".{name}"),
    "esd-all": ("every UNet parameter", lambda name, mod: True),
}
# The tensors that map text tokens to keys and values (anchors' and the twin map's closed forms).
KEY_VALUE = (".attn2.to_k.", ".attn2.to_v.")
PROBE = "up_blocks.0.attentions.0.transformer_blocks.0"      # a module name that trains_keys_and_values asks about


CLOSED_FORM_KV = True     # text tokens reach attn2.to_k / to_v unchanged: twin map and key/value penalty apply
INPAINTS = True           # load_pipeline picks its pipeline class by task (models.PIPELINES)


def native_resolution(pipe):
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def resolution_step(pipe):
    """Image sizes must be multiples of this: the VAE's factor times the UNet's halvings."""
    return pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)


def latent_channels(unet):
    return unet.config.out_channels


def call_kwargs(pipe):
    """What every call of the pipeline passes beyond the prompt: nothing for this family."""
    return {}


def pipeline_latents(x):
    """Initial noise (B, C, h, w) as the pipeline's `latents=` takes it: unchanged for this family."""
    return x


def kohya_module(module, config):
    """The module name a kohya LoRA file uses: diffusers' own for SD 1.x/2.x."""
    return module


def base_version(unet):
    """The metadata AUTOMATIC1111 lists a LoRA by (kohya's ss_base_model_version, the SAI model spec's
    architecture): SD 2.x (1024-wide text features) or SD 1.x."""
    if unet.config.cross_attention_dim == 1024:
        version = "sd_v2"
        spec = "stable-diffusion-v2-512" if unet.config.sample_size <= 64 else "stable-diffusion-v2-768-v"
    else:
        version, spec = "sd_v1", "stable-diffusion-v1"
    return {"ss_base_model_version": version, "modelspec.architecture": f"{spec}/lora",
            "modelspec.sai_model_spec": "1.0.0"}


# Weight-change reports (evaluation/weight_change_analysis.py): the real-size architecture the counts
# are shown against, and the groups a tensor name falls in.
REFERENCE = "sd14"
BLOCKS = ("down", "mid", "up", "other")
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out", "other")


def block_of(name):
    """'down_blocks.1.attentions...' -> 'down.1', 'mid_block...' -> 'mid', 'up_blocks.2...' -> 'up.2', else 'other'."""
    m = re.match(r"(down|up)_blocks\.(\d+)\.", name)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    return "mid" if name.startswith("mid_block.") else "other"


def projection_of(name):
    """'to_q', 'to_k', 'to_v', 'to_out' (to_out.0 weight and bias) for attention projections, else 'other'."""
    m = re.search(r"\.(to_q|to_k|to_v|to_out)\.", f".{name}")
    return m.group(1) if m else "other"
