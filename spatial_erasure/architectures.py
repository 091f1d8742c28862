"""Real-size Stable Diffusion UNets and SD3 / Flux transformers with random weights, built from the
public configs below: what a method costs at real size (parameters, memory, seconds per step)
without downloading weights.

    python -m spatial_erasure.architectures                # parameters each train method selects

`build_unet(name)` and `build_transformer(name)` build on the meta device (no memory).
`build_pipeline(name)` puts the real-size UNet (or SD3 transformer) behind tiny 1-layer text encoders
and a tiny 8x-downsampling VAE: only their output shapes matter to the denoiser's cost, so real-size
numbers measured with it are the denoiser's. (Flux is counted, not built: its T5 is 4096 wide even
at one layer.)
"""
import os
import shutil
from dataclasses import dataclass

import torch
from diffusers import (AutoencoderKL, DDIMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler,
                       StableDiffusion3Pipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from diffusers.utils import logging as diffusers_logging
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .models import TOY_MODEL
from . import cli
from .families import FAMILIES, sd
from .selection import count, select_parameters


@dataclass(frozen=True)
class Architecture:
    hub_id: str
    unet: dict              # the hub model's unet/config.json
    resolution: int         # native image size in pixels (UNet sample_size x 8)
    text_widths: tuple      # hidden width of each text encoder; concatenated they are cross_attention_dim
    scheduler: str          # "ddim" or "euler"
    description: str


# CompVis/stable-diffusion-v1-4 unet/config.json (stable-diffusion-v1-5/stable-diffusion-v1-5, formerly
# runwayml/, has the same UNet; runwayml/ took its SD 1.5 repositories down in 2024)
SD14_UNET_CONFIG = dict(act_fn="silu", attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280),
                        center_input_sample=False, cross_attention_dim=768, downsample_padding=1,
                        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",), flip_sin_to_cos=True,
                        freq_shift=0, in_channels=4, layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5,
                        norm_num_groups=32, out_channels=4, sample_size=64,
                        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
# stabilityai/stable-diffusion-2-base: SD 1's layout with OpenCLIP-H's 1024-wide text and 64-d heads
# (attention_head_dim counts heads here). SD 2.x 768-v has this UNet too but predicts v, not epsilon.
SD2_UNET_CONFIG = {**SD14_UNET_CONFIG, "attention_head_dim": (5, 10, 20, 20), "cross_attention_dim": 1024,
                   "use_linear_projection": True}
# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (the values that differ from the defaults)
SDXL_UNET_CONFIG = dict(act_fn="silu", addition_embed_type="text_time", addition_embed_type_num_heads=64,
                        addition_time_embed_dim=256, attention_head_dim=(5, 10, 20),
                        block_out_channels=(320, 640, 1280), center_input_sample=False, cross_attention_dim=2048,
                        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                        downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
                        mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, out_channels=4,
                        # pooled OpenCLIP-bigG text (1280) + 6 size/crop ids x 256-d Fourier features
                        projection_class_embeddings_input_dim=2816, sample_size=128,
                        transformer_layers_per_block=(1, 2, 10),
                        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                        use_linear_projection=True)

ARCHITECTURES = {
    "sd14": Architecture("CompVis/stable-diffusion-v1-4", SD14_UNET_CONFIG, 512, (768,), "ddim",
                         "SD 1.4/1.5 text-to-image, CLIP ViT-L text"),
    "sd-inpaint": Architecture("stable-diffusion-v1-5/stable-diffusion-inpainting",
                               {**SD14_UNET_CONFIG, "in_channels": 9}, 512, (768,), "ddim",
                               "SD 1.5 inpainting: latent + mask + masked-image latent in"),
    "sd2": Architecture("stabilityai/stable-diffusion-2-base", SD2_UNET_CONFIG, 512, (1024,), "ddim",
                        "SD 2 base (epsilon), OpenCLIP-H text"),
    "sdxl": Architecture("stabilityai/stable-diffusion-xl-base-1.0", SDXL_UNET_CONFIG, 1024, (768, 1280), "euler",
                         "SDXL base: two text encoders, pooled text + size conditioning"),
}


@dataclass(frozen=True)
class FlowArchitecture:
    hub_id: str
    family: str             # spatial_erasure.families key: "sd3" or "flux"
    transformer: dict       # the hub model's transformer/config.json (values that differ from the defaults)
    resolution: int         # native image size in pixels
    description: str
    text_widths: tuple = ()  # SD3: the two CLIPs' widths; their pooled projections concatenated are 2048
    shift: float = 3.0       # SD3: the scheduler's timestep shift (scheduler/scheduler_config.json)


# stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json
SD3_MEDIUM_CONFIG = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                         attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                         caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)
# stabilityai/stable-diffusion-3.5-large transformer/config.json: 38 blocks of 38 heads, RMS-normed q and k
SD35_LARGE_CONFIG = {**SD3_MEDIUM_CONFIG, "num_layers": 38, "num_attention_heads": 38,
                     "caption_projection_dim": 2432, "qk_norm": "rms_norm"}
# black-forest-labs/FLUX.1-dev transformer/config.json: 19 double-stream and 38 single-stream blocks,
# 2x2-packed 16-channel latents (64 in), the distilled guidance as an input
FLUX_DEV_CONFIG = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       guidance_embeds=True, axes_dims_rope=(16, 56, 56))

FLOW_ARCHITECTURES = {
    "sd3-medium": FlowArchitecture("stabilityai/stable-diffusion-3-medium-diffusers", "sd3", SD3_MEDIUM_CONFIG, 1024,
                                   "SD3 medium: 24 joint blocks, two CLIPs + T5-XXL", (768, 1280)),
    "sd3.5-large": FlowArchitecture("stabilityai/stable-diffusion-3.5-large", "sd3", SD35_LARGE_CONFIG, 1024,
                                    "SD3.5 large: 38 joint blocks, qk RMS norm", (768, 1280)),
    "flux-dev": FlowArchitecture("black-forest-labs/FLUX.1-dev", "flux", FLUX_DEV_CONFIG, 1024,
                                 "Flux.1 dev: 19 double- + 38 single-stream blocks, guidance-distilled"),
}
# the public scheduler configs share SD's training betas; SD 1/2 use DDIM here, as the reference ESD samples
BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
SCHEDULERS = {"ddim": lambda: DDIMScheduler(**BETAS, steps_offset=1, clip_sample=False, set_alpha_to_one=False),
              "euler": lambda: EulerDiscreteScheduler(**BETAS, steps_offset=1, timestep_spacing="leading")}


def _arch(name):
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def _flow(name):
    if name not in FLOW_ARCHITECTURES:
        raise ValueError(f"unknown transformer architecture {name!r}; choose one of {', '.join(FLOW_ARCHITECTURES)}")
    return FLOW_ARCHITECTURES[name]


def build_unet(name, device="meta", **overrides):
    """The named UNet with random weights (config values replaced by `overrides`); on meta it costs no memory."""
    with torch.device(device):
        return UNet2DConditionModel(**{**_arch(name).unet, **overrides})


def build_transformer(name, device="meta", **overrides):
    """The named SD3 / Flux transformer with random weights (its family's DENOISER_CLASS); on meta it costs
    no memory."""
    arch = _flow(name)
    with torch.device(device):
        return FAMILIES[arch.family].DENOISER_CLASS(**{**arch.transformer, **overrides})


def train_methods(name):
    """The train-method table (spatial_erasure.families) of the named UNet or transformer architecture."""
    return FAMILIES[_flow(name).family].TRAIN_METHODS if name in FLOW_ARCHITECTURES else sd.TRAIN_METHODS


def count_parameters(name):
    """{"total": denoiser parameters, method: {"tensors", "parameters"} for each of its family's train
    methods}, counted on meta; `name` is a UNet (ARCHITECTURES) or a transformer (FLOW_ARCHITECTURES)."""
    denoiser = build_transformer(name) if name in FLOW_ARCHITECTURES else build_unet(name)
    out = {"total": sum(p.numel() for p in denoiser.parameters())}
    for method in train_methods(name):
        n, p = count(select_parameters(denoiser, method))
        out[method] = {"tensors": n, "parameters": p}
    return out


def toy_tokenizer():
    """The toy model's real CLIP BPE tokenizer (720 tokens): no hub needed."""
    return CLIPTokenizer.from_pretrained(f"{TOY_MODEL}/tokenizer")


def text_encoder(tok, hidden, layers=1, heads=None, projection=False):
    """A random CLIP text encoder of width `hidden` (64-d heads unless `heads`); with projection its pooled
    output is `hidden` wide too (SDXL's second encoder)."""
    cfg = CLIPTextConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads or max(1, hidden // 64),
                         max_position_embeddings=tok.model_max_length, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, projection_dim=hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def tiny_vae(resolution, latent_channels=4):
    """A random 4-level VAE, (8, 8, 8, 8): 3 downsamplings = SD's 8x latent grid, 25k parameters."""
    return AutoencoderKL(block_out_channels=(8, 8, 8, 8), in_channels=3, out_channels=3,
                         latent_channels=latent_channels, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=resolution)


def build_sd3_pipeline(name, seed=0, transformer_overrides=None):
    """A StableDiffusion3Pipeline around the named real-size SD3 transformer (random fp32 weights on CPU),
    two 1-layer CLIPs with projection of SD3's widths (pooled 768 + 1280 = 2048), no T5 (its part is
    zeros of the joint width, as the pipeline builds it without T5) and a tiny 16-channel VAE."""
    arch = _flow(name)
    if arch.family != "sd3":
        raise ValueError(f"{name} is counted on the meta device, not built as a pipeline; build an SD3 one "
                         f"({', '.join(k for k, a in FLOW_ARCHITECTURES.items() if a.family == 'sd3')})")
    torch.manual_seed(seed)
    tok = toy_tokenizer()
    vae = tiny_vae(arch.resolution, arch.transformer["in_channels"])
    vae.register_to_config(scaling_factor=1.5305, shift_factor=0.0609)     # SD3's VAE config values
    te1, te2 = (text_encoder(tok, w, projection=True) for w in arch.text_widths)
    transformer = build_transformer(name, "cpu", **(transformer_overrides or {}))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=arch.shift)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=te1,
                                    tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok, text_encoder_3=None,
                                    tokenizer_3=None)


def build_pipeline(name, seed=0, unet_overrides=None):
    """A diffusers pipeline around the named real-size UNet (random fp32 weights on CPU), tiny text
    encoder(s) of the widths it expects and a tiny 4-level (8x) VAE; `unet_overrides` shrinks it for tests.
    An SD3 name builds build_sd3_pipeline (the overrides then shrink its transformer)."""
    if name in FLOW_ARCHITECTURES:
        return build_sd3_pipeline(name, seed, unet_overrides)
    arch = _arch(name)
    torch.manual_seed(seed)
    tok = toy_tokenizer()
    vae = tiny_vae(arch.resolution)
    unet = build_unet(name, "cpu", **(unet_overrides or {}))
    scheduler = SCHEDULERS[arch.scheduler]()
    if len(arch.text_widths) == 2:
        # SDXL: hidden states 768 + 1280 = 2048 concatenated; the second encoder's pooled 1280 feeds the added embedding
        te1, te2 = text_encoder(tok, arch.text_widths[0]), text_encoder(tok, arch.text_widths[1], projection=True)
        return StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok,
                                         unet=unet, scheduler=scheduler)
    cls = StableDiffusionInpaintPipeline if arch.unet["in_channels"] == 9 else StableDiffusionPipeline
    return cls(vae=vae, text_encoder=text_encoder(tok, arch.text_widths[0]), tokenizer=tok, unet=unet,
               scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_pipeline(name, folder, dtype=torch.float16, seed=0, unet_overrides=None):
    """Write build_pipeline(name) as a safetensors pipeline folder in `dtype`, atomically; an existing
    folder (with model_index.json) is kept as is. fp16 halves SDXL's 10 GB; load_pipeline upcasts."""
    folder = str(folder)
    if os.path.exists(os.path.join(folder, "model_index.json")):
        return folder
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)     # left by an interrupted run
    pipe = build_pipeline(name, seed, unet_overrides)
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()    # `to(dtype)` warns that no module asks to stay fp32
    pipe.to(dtype=dtype).save_pretrained(tmp, safe_serialization=True)
    diffusers_logging.set_verbosity(level)
    os.replace(tmp, folder)
    return folder


def parse_args(argv=None):
    p = cli.parser(__doc__)
    names = [*ARCHITECTURES, *FLOW_ARCHITECTURES]
    p.add_argument("--architectures", nargs="+", default=names, choices=names, help="architectures to list")
    return p.parse_args(argv)


def main(args):
    """One table per train-method table (SD's UNets; SD3; Flux): tensors / parameters each method selects."""
    from .reports import markdown_table
    tables = {}
    for name in args.architectures:
        arch, counts = (FLOW_ARCHITECTURES.get(name) or ARCHITECTURES[name]), count_parameters(name)
        row = {"architecture": name, "hub id": arch.hub_id, "native px": arch.resolution,
               "parameters": f"{counts['total']:,}"}
        for method in train_methods(name):
            row[method] = f"{counts[method]['tensors']} / {counts[method]['parameters']:,}"
        tables.setdefault(id(train_methods(name)), []).append(row)
    print("train methods: tensors / parameters selected")
    for rows in tables.values():
        print("\n" + markdown_table(rows, list(rows[0])))


if __name__ == "__main__":
    main(parse_args())
