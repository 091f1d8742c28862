"""Stable Diffusion 3 and 3.5 (MMDiT, flow matching).

- recognised by: an SD3Transformer2DModel denoiser (pipeline class StableDiffusion3*);
- text: two CLIP encoders' penultimate hidden states (concatenated, padded to the joint width) then
  T5's sequence (zeros when text_encoder_3 is None), and both CLIPs' pooled projections;
- denoiser: the transformer, predicting the flow velocity v = noise - x0 at sigma = t / 1000,
  stepped by FlowMatchEulerDiscreteScheduler with the model's timestep shift;
- train methods: the joint blocks' attention, the text stream's key/value projections
  (attn.add_k_proj / add_v_proj) being the analogue of SD's cross-attention keys and values;
- export names: diffusers' transformer module names.
"""
import re

import torch
from diffusers import SD3Transformer2DModel

from ..conditioning import Cond, one_note_on_cut_prompts, text_length

KEY = "sd3"
NAME = "Stable Diffusion 3"
PIPELINE_PREFIXES = ("StableDiffusion3",)
DENOISER = "transformer"
DENOISER_CLASS = SD3Transformer2DModel
PREDICTS = "velocity"


def owns(denoiser):
    return isinstance(denoiser, SD3Transformer2DModel)


def architecture(transformer):
    """'sd3' (SD3 medium: no dual attention), or 'sd3.5' when blocks carry the second image attention."""
    return "sd3.5" if transformer.config.get("dual_attention_layers") else "sd3"


@torch.no_grad()
def encode(pipe, prompts, resolution=None, max_sequence_length=None):
    """Cond(joint text sequence (B, L_clip + L_t5, D), pooled (B, P)) as StableDiffusion3Pipeline
    encodes a prompt for its transformer, on pipe.device."""
    max_sequence_length = max_sequence_length or text_length(pipe, 256)
    with one_note_on_cut_prompts(pipe, prompts):
        emb, _, pooled, _ = pipe.encode_prompt(prompts, None, None, device=pipe.device, num_images_per_prompt=1,
                                               do_classifier_free_guidance=False,
                                               max_sequence_length=max_sequence_length)
    return Cond(emb, pooled)



def call_kwargs(pipe):
    """What every call of the pipeline passes: the T5 length it was trained with (conditioning.text_length)."""
    return {"max_sequence_length": text_length(pipe, 256)}


def pipeline_latents(x):
    """Initial noise (B, C, h, w) as the pipeline's `latents=` takes it: unchanged for this family."""
    return x


def predict(transformer, x, t, cond, params=None, sampling=False):
    """The velocity at latents x (B, C, h, w) and timestep t (a scalar or (B,), in [0, 1000]);
    `params` ({name: tensor}) overrides weights, e.g. the frozen originals."""
    t = torch.as_tensor(t, device=x.device).expand(len(x))
    kwargs = {"hidden_states": x, "timestep": t, "encoder_hidden_states": cond.emb,
              "pooled_projections": cond.pooled, "return_dict": False}
    if params is None:
        return transformer(**kwargs)[0]
    return torch.func.functional_call(transformer, params, (), kwargs, strict=False)[0]


def _joint(part):
    """A predicate: parameters of the joint blocks' attention module `attn` whose name holds `part`."""
    return lambda name, mod: name.startswith("transformer_blocks.") and f".attn.{part}" in name


TRAIN_METHODS = {
    "esd-x": ("every Linear of the joint blocks' attention (attn: both streams' q, k, v and out)",
              lambda name, mod: name.startswith("transformer_blocks.") and ".attn." in name
              and isinstance(mod, torch.nn.Linear)),
    "esd-x-strict": ("the text stream's key and value projections (attn.add_k_proj, attn.add_v_proj): the "
                     "analogue of SD's attn2.to_k / to_v",
                     lambda name, mod: _joint("add_k_proj.")(name, mod) or _joint("add_v_proj.")(name, mod)),
    "esd-x-text": ("the text stream's attention (attn.add_q_proj, add_k_proj, add_v_proj, to_add_out)",
                   lambda name, mod: any(_joint(p)(name, mod) for p in ("add_q_proj.", "add_k_proj.",
                                                                         "add_v_proj.", "to_add_out."))),
    "esd-u": ("every parameter outside the joint attention", lambda name, mod: ".attn." not in name),
    "esd-all": ("every transformer parameter", lambda name, mod: True),
}
KEY_VALUE = (".attn.add_k_proj.", ".attn.add_v_proj.")
PROBE = "transformer_blocks.0"                    # a module name that trains_keys_and_values asks about


# The text tokens reach add_k_proj through the context embedder and each block's timestep-modulated norm
# (norm1_context): no closed form in the text embedding alone, so no twin map and no key/value penalty.
CLOSED_FORM_KV = False


INPAINTS = False          # text-to-image as loaded (its inpainting pipelines: not yet)


def native_resolution(pipe):
    return pipe.transformer.config.sample_size * pipe.vae_scale_factor


def resolution_step(pipe):
    return pipe.vae_scale_factor * pipe.transformer.config.patch_size


def latent_channels(transformer):
    return transformer.config.out_channels


def kohya_module(module, config):
    """diffusers' own module names (ComfyUI and kohya's sd3 scripts read `lora_transformer_...`)."""
    return module


def base_version(transformer):
    spec = "stable-diffusion-v3.5-large" if architecture(transformer) == "sd3.5" else "stable-diffusion-v3-medium"
    return {"ss_base_model_version": "sd3", "modelspec.architecture": f"{spec}/lora",
            "modelspec.sai_model_spec": "1.0.0"}


# Weight-change reports (evaluation/weight_change_analysis.py): the real-size architecture the counts
# are shown against, and the groups a tensor name falls in: joint block N ('joint.N', else 'other'); the image stream's
# to_q/k/v/out, the text stream's add_q/k/v_proj and to_add_out.
REFERENCE = "sd3-medium"
BLOCKS = ("joint", "other")
PROJECTIONS = ("to_q", "to_k", "to_v", "to_out", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "other")


def block_of(name):
    """'transformer_blocks.3...' -> 'joint.3', else 'other'."""
    m = re.match(r"transformer_blocks\.(\d+)\.", name)
    return f"joint.{m.group(1)}" if m else "other"


def projection_of(name):
    """The attention projection a tensor belongs to (PROJECTIONS), else 'other'."""
    m = re.search(r"\.(to_q|to_k|to_v|to_out|add_q_proj|add_k_proj|add_v_proj|to_add_out)\.", f".{name}")
    return m.group(1) if m else "other"
