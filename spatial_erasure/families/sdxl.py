"""Stable Diffusion XL (and SDXL-inpainting).

- recognised by: a UNet2DConditionModel with the added time embedding (addition_embed_type
  "text_time");
- text: two CLIP encoders' penultimate hidden states, concatenated, plus the second one's pooled
  projection and the size conditioning (add_time_ids);
- denoiser, scheduler and train methods: the UNet's, as SD's (families.sd);
- export names: the LDM layout kohya and AUTOMATIC1111 use (spatial_erasure.families.ldm_names).
"""
import torch
from diffusers import UNet2DConditionModel

from ..conditioning import Cond, one_note_on_cut_prompts
from .ldm_names import ldm_name

from . import sd

KEY = "sdxl"
NAME = "SDXL"
PIPELINE_PREFIXES = ("StableDiffusionXL",)
DENOISER = "unet"
DENOISER_CLASS = UNet2DConditionModel
PREDICTS = "eps"
TRAIN_METHODS = sd.TRAIN_METHODS
KEY_VALUE = sd.KEY_VALUE
PROBE = sd.PROBE
CLOSED_FORM_KV = True
INPAINTS = True
native_resolution, resolution_step, latent_channels = sd.native_resolution, sd.resolution_step, sd.latent_channels


def owns(denoiser):
    """A UNet2DConditionModel with the added time embedding."""
    return isinstance(denoiser, UNet2DConditionModel) and denoiser.config.get("addition_embed_type") == "text_time"


def architecture(unet):
    """'sdxl', or 'sdxl-inpaint' for a 9-channel UNet."""
    return "sdxl" + ("-inpaint" if unet.config.in_channels == 9 else "")


@torch.no_grad()
def encode(pipe, prompts, resolution=None):
    """Cond(hidden states, pooled text, time ids) as the SDXL pipeline builds them, on pipe.device."""
    with one_note_on_cut_prompts(pipe, prompts):
        emb, _, pooled, _ = pipe.encode_prompt(prompts, device=pipe.device, num_images_per_prompt=1,
                                               do_classifier_free_guidance=False)
    size = resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor
    # add_time_ids = (original size, crop top-left, target size), as the SDXL pipeline builds them
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=emb.dtype, device=emb.device)
    return Cond(emb, pooled, time_ids.repeat(len(prompts), 1))


def call_kwargs(pipe):
    """What every call of the pipeline passes beyond the prompt: nothing for this family."""
    return {}


def pipeline_latents(x):
    """Initial noise (B, C, h, w) as the pipeline's `latents=` takes it: unchanged for this family."""
    return x


def kohya_module(module, config):
    """The LDM name kohya and AUTOMATIC1111 give an SDXL UNet module (`config`: the UNet's)."""
    return ldm_name(module, config)


def base_version(unet):
    return {"ss_base_model_version": "sdxl_base_v1-0", "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.sai_model_spec": "1.0.0"}


# weight-change reports: SDXL's UNet blocks and projections are named as SD's (families.sd)
REFERENCE = "sdxl"
BLOCKS, PROJECTIONS, block_of, projection_of = sd.BLOCKS, sd.PROJECTIONS, sd.block_of, sd.projection_of
