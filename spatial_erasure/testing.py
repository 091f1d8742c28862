"""Tiny random-weight pipelines built from configs, for tests and smoke runs (diffusers'
`get_dummy_components` style). `save_tiny_pipeline(kind, folder)` writes a real pipeline folder
that `load_pipeline(folder)` loads like any Stable Diffusion checkpoint.

kinds: "sd" (4-channel UNet, SD 1.x block layout), "sd-inpaint" (9-channel UNet), "sdxl"; and the
flow-matching transformers (FLOW_KINDS, at the sizes of diffusers' own tests): "sd3" (two CLIP
encoders with projection, no T5), "flux" (Flux-dev's layout: CLIP pooled + a tiny T5, guidance
embedding). Real-size UNets with random weights (for benchmarks) are in `architectures`.
"""
import torch
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel,
                       SD3Transformer2DModel, StableDiffusion3Pipeline, StableDiffusionInpaintPipeline,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import T5Config, T5EncoderModel

from .architectures import SCHEDULERS, text_encoder, toy_tokenizer

KINDS = ("sd", "sd-inpaint", "sdxl")
FLOW_KINDS = ("sd3", "flux")


def _vae():
    return AutoencoderKL(block_out_channels=(16, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32)


def tiny_pipeline(kind="sd", seed=0):
    """A random-weight pipeline of the given kind: 32x32 images, 16x16 latents, ~0.1M-parameter UNet."""
    if kind not in KINDS + FLOW_KINDS:
        raise ValueError(f"kind must be one of {KINDS + FLOW_KINDS}, not {kind!r}")
    torch.manual_seed(seed)
    tok = toy_tokenizer()
    if kind in FLOW_KINDS:
        return _flow_pipeline(kind, tok)
    if kind == "sdxl":
        # two text encoders whose hidden states are concatenated (16 + 16 = 32 = cross_attention_dim);
        # the added embedding sees 6 time ids x 8 + the pooled 16-d projection = 64
        te1, te2 = text_encoder(tok, 16, 2, 2), text_encoder(tok, 16, 2, 2, projection=True)
        unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                    in_channels=4, out_channels=4, norm_num_groups=8,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    attention_head_dim=(2, 4), use_linear_projection=True,
                                    addition_embed_type="text_time", addition_time_embed_dim=8,
                                    projection_class_embeddings_input_dim=64, cross_attention_dim=32)
        return StableDiffusionXLPipeline(vae=_vae(), text_encoder=te1, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=tok, unet=unet,
                                         scheduler=SCHEDULERS["euler"]())
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                in_channels=9 if kind == "sd-inpaint" else 4, out_channels=4, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4)
    cls = StableDiffusionInpaintPipeline if kind == "sd-inpaint" else StableDiffusionPipeline
    return cls(vae=_vae(), text_encoder=text_encoder(tok, 32, 2, 2), tokenizer=tok, unet=unet,
               scheduler=SCHEDULERS["ddim"](),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _flow_pipeline(kind, tok):
    """SD3: joint width 64 = the two CLIPs' 32 + 32 (no T5: zeros), pooled 64; Flux: packed 2x2 latents
    (16 = 4 x 4 channels), joint width 32 = the tiny T5's, pooled 32 = CLIP's."""
    vae = _vae()
    vae.register_to_config(shift_factor=0.0)       # SD3 and Flux latents: (z - shift) * scale
    if kind == "sd3":
        tr = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2,
                                   attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                   joint_attention_dim=64, pooled_projection_dim=64)
        return StableDiffusion3Pipeline(transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                        text_encoder=text_encoder(tok, 32, 2, 2, projection=True), tokenizer=tok,
                                        text_encoder_2=text_encoder(tok, 32, 2, 2, projection=True),
                                        tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 dropout_rate=0.0, decoder_start_token_id=0)).eval()
    tr = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                pooled_projection_dim=32, axes_dims_rope=(4, 6, 6), guidance_embeds=True)
    return FluxPipeline(transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                        text_encoder=text_encoder(tok, 32, 2, 2), tokenizer=tok, text_encoder_2=t5, tokenizer_2=tok)


def save_tiny_pipeline(kind, folder, seed=0):
    """Build a tiny pipeline and save it as a standard diffusers folder (safetensors); returns folder."""
    tiny_pipeline(kind, seed).save_pretrained(folder, safe_serialization=True)
    return str(folder)


def save_tiny_clip(folder, seed=0):
    """A random-weight CLIPModel (32x32 images) with the toy tokenizer, saved like a hub CLIP: for
    tests of the real-SD judge (metrics.ClipJudge) without downloading one."""
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(seed)
    tok = toy_tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
