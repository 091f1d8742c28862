"""Tiny random-weight pipelines built from configs, for tests and smoke runs (diffusers'
`get_dummy_components` style). `save_tiny_pipeline(kind, folder)` writes a real pipeline folder
that `load_pipeline(folder)` loads like any Stable Diffusion checkpoint.

kinds: "sd" (4-channel UNet, SD 1.x block layout), "sd-inpaint" (9-channel UNet), "sdxl".
Real-size UNets with random weights (for benchmarks) are in `architectures`.
"""
import torch
from diffusers import (AutoencoderKL, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)

from .architectures import SCHEDULERS, text_encoder, toy_tokenizer

KINDS = ("sd", "sd-inpaint", "sdxl")


def _vae():
    return AutoencoderKL(block_out_channels=(16, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32)


def tiny_pipeline(kind="sd", seed=0):
    """A random-weight pipeline of the given kind: 32x32 images, 16x16 latents, ~0.1M-parameter UNet."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    torch.manual_seed(seed)
    tok = toy_tokenizer()
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
