"""Tiny random-weight pipelines built from configs, for tests and smoke runs (diffusers'
`get_dummy_components` style). `save_tiny_pipeline(kind, folder)` writes a real pipeline folder
that `load_pipeline(folder)` loads like any Stable Diffusion checkpoint.

kinds: "sd" (4-channel UNet, SD 1.x block layout), "sd-inpaint" (9-channel UNet), "sdxl".
"""
import torch
from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, StableDiffusionInpaintPipeline,
                       StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .models import TOY_MODEL

KINDS = ("sd", "sd-inpaint", "sdxl")


def _tokenizer():
    # the toy model's real CLIP BPE tokenizer (720 tokens): no hub needed
    return CLIPTokenizer.from_pretrained(f"{TOY_MODEL}/tokenizer")


def _text_encoder(tok, hidden, projection=False):
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=tok.model_max_length,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, projection_dim=hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def _vae():
    return AutoencoderKL(block_out_channels=(16, 16), in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=8, sample_size=32)


def tiny_pipeline(kind="sd", seed=0):
    """A random-weight pipeline of the given kind: 32x32 images, 16x16 latents, ~0.1M-parameter UNet."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    torch.manual_seed(seed)
    tok = _tokenizer()
    sched = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if kind == "sdxl":
        # two text encoders whose hidden states are concatenated (16 + 16 = 32 = cross_attention_dim);
        # the added embedding sees 6 time ids x 8 + the pooled 16-d projection = 64
        te1, te2 = _text_encoder(tok, 16), _text_encoder(tok, 16, projection=True)
        unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                    in_channels=4, out_channels=4, norm_num_groups=8,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    attention_head_dim=(2, 4), use_linear_projection=True,
                                    addition_embed_type="text_time", addition_time_embed_dim=8,
                                    projection_class_embeddings_input_dim=64, cross_attention_dim=32)
        return StableDiffusionXLPipeline(vae=_vae(), text_encoder=te1, text_encoder_2=te2, tokenizer=tok,
                                         tokenizer_2=tok, unet=unet,
                                         scheduler=EulerDiscreteScheduler(**sched, timestep_spacing="leading"))
    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=16,
                                in_channels=9 if kind == "sd-inpaint" else 4, out_channels=4, norm_num_groups=8,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                attention_head_dim=4)
    cls = StableDiffusionInpaintPipeline if kind == "sd-inpaint" else StableDiffusionPipeline
    return cls(vae=_vae(), text_encoder=_text_encoder(tok, 32), tokenizer=tok, unet=unet,
               scheduler=DDIMScheduler(**sched, clip_sample=False, set_alpha_to_one=False),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_tiny_pipeline(kind, folder, seed=0):
    """Build a tiny pipeline and save it as a standard diffusers folder (safetensors); returns folder."""
    tiny_pipeline(kind, seed).save_pretrained(folder, safe_serialization=True)
    return str(folder)


# CompVis/stable-diffusion-v1-4's unet/config.json (public): 860M parameters, 16 attn2 blocks.
SD14_UNET_CONFIG = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                        center_input_sample=False, cross_attention_dim=768, downsample_padding=1,
                        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), flip_sin_to_cos=True,
                        freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
                        norm_num_groups=32, out_channels=4, sample_size=64,
                        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def sd14_unet(device="meta", **overrides):
    """An SD-1.4-architecture UNet with random weights; on the meta device it costs no memory."""
    with torch.device(device):
        return UNet2DConditionModel(**{**SD14_UNET_CONFIG, **overrides})


def sd14_pipeline(seed=0):
    """SD-1.4's UNet (860M parameters, random weights) behind a 1-layer 768-wide text encoder and a
    tiny 8x-downsampling VAE: real UNet cost for benchmarks, no download."""
    torch.manual_seed(seed)
    tok = _tokenizer()
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=768, intermediate_size=768, num_hidden_layers=1,
                         num_attention_heads=12, max_position_embeddings=tok.model_max_length,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vae = AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=4, sample_size=512)
    return StableDiffusionPipeline(vae=vae, text_encoder=CLIPTextModel(cfg), tokenizer=tok, unet=sd14_unet("cpu"),
                                   scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                                           beta_schedule="scaled_linear", clip_sample=False,
                                                           set_alpha_to_one=False),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_tiny_clip(folder, seed=0):
    """A random-weight CLIPModel (32x32 images) with the toy tokenizer, saved like a hub CLIP: for
    tests of the real-SD judge (metrics.ClipJudge) without downloading one."""
    from transformers import CLIPConfig, CLIPModel
    torch.manual_seed(seed)
    tok = _tokenizer()
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
