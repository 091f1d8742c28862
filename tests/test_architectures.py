import os

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline, StableDiffusionXLPipeline

from spatial_erasure.architectures import (ARCHITECTURES, build_pipeline, build_unet, count_parameters, main,
                                           parse_args, save_pipeline)
from spatial_erasure.models import load_pipeline
from spatial_erasure.prompts import encode

SD14_TOTAL = 859_520_964
# real widths of text, time and added embeddings kept; a few thousand UNet parameters instead of 860M
SMALL = {"sd14": dict(block_out_channels=(32, 32, 64, 64), norm_num_groups=8, layers_per_block=1),
         "sdxl": dict(block_out_channels=(32, 64, 64), norm_num_groups=8, layers_per_block=1,
                      attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 1, 1))}
SMALL["sd-inpaint"] = SMALL["sd14"]


@pytest.mark.parametrize("name, total, esd_x", [
    ("sd14", SD14_TOTAL, (80, 43_962_560)),
    ("sd-inpaint", SD14_TOTAL + 5 * 320 * 9, (80, 43_962_560)),   # conv_in sees 5 more channels (3x3 kernels)
    ("sd2", 865_910_724, (80, 50_352_320)),                        # to_k, to_v read 1024-wide text instead of 768
    # 70 attn2 blocks: down 2x2 + 2x10, mid 10, up 3x10 + 3x2 (transformer depth 2 at 640, 10 at 1280)
    ("sdxl", 2_567_463_684, (350, 545_670_400)),
])
def test_meta_parameter_counts_are_the_public_models(name, total, esd_x):
    counts = count_parameters(name)
    assert counts["total"] == total == counts["esd-all"]["parameters"]
    assert (counts["esd-x"]["tensors"], counts["esd-x"]["parameters"]) == esd_x
    # esd-u is everything outside attn2, which holds only esd-x's Linear tensors
    assert counts["esd-u"]["parameters"] + counts["esd-x"]["parameters"] == total
    assert next(build_unet(name).parameters()).device.type == "meta"


def test_sdxl_added_embedding_is_pooled_text_plus_six_time_ids():
    arch = ARCHITECTURES["sdxl"]
    assert arch.unet["projection_class_embeddings_input_dim"] == 1280 + 6 * arch.unet["addition_time_embed_dim"]
    assert sum(arch.text_widths) == arch.unet["cross_attention_dim"] == 2048
    assert arch.text_widths[-1] == 1280
    for a in ARCHITECTURES.values():
        assert a.unet["sample_size"] * 8 == a.resolution


def test_unknown_architecture_lists_the_choices():
    with pytest.raises(ValueError, match="sd14, sd-inpaint, sd2, sdxl"):
        build_unet("sd3")


@pytest.mark.parametrize("name", ["sd14", "sd-inpaint", "sdxl"])
def test_pipeline_text_encoders_fit_the_unet(name):
    pipe = build_pipeline(name, unet_overrides=SMALL[name])
    arch = ARCHITECTURES[name]
    assert pipe.vae_scale_factor == 8
    assert pipe.vae.config.sample_size == arch.resolution
    assert isinstance(pipe, StableDiffusionXLPipeline) == (name == "sdxl")
    cond = encode(pipe, ["a painting of a house", "a cat"])
    assert cond.emb.shape == (2, pipe.tokenizer.model_max_length, arch.unet["cross_attention_dim"])
    if name == "sdxl":
        assert cond.pooled.shape == (2, 1280)
        assert cond.time_ids[0].tolist() == [1024, 1024, 0, 0, 1024, 1024]
        assert isinstance(pipe.scheduler, EulerDiscreteScheduler)
        assert pipe.scheduler.config.timestep_spacing == "leading"
    latents = torch.randn(2, arch.unet["in_channels"], 16, 16)
    with torch.no_grad():
        out = pipe.unet(latents, torch.tensor([10, 500]), **cond.unet_kwargs()).sample
    assert out.shape == (2, 4, 16, 16)
    assert torch.isfinite(out).all()
    assert pipe.scheduler.config.steps_offset == 1
    assert pipe.scheduler.config.beta_end == 0.012


def test_save_pipeline_round_trips_through_load_pipeline_in_fp16(tmp_path):
    folder = str(tmp_path / "inpaint")
    assert save_pipeline("sd-inpaint", folder, unet_overrides=SMALL["sd-inpaint"]) == folder
    assert not os.path.exists(folder + ".tmp")
    pipe = load_pipeline(folder, task="inpaint")
    assert isinstance(pipe, StableDiffusionInpaintPipeline)
    assert pipe.unet.dtype == torch.float32
    ref = build_pipeline("sd-inpaint", unet_overrides=SMALL["sd-inpaint"]).unet.state_dict()
    for k, v in pipe.unet.state_dict().items():
        assert torch.equal(v, ref[k].half().float()), k      # fp16 on disk, upcast on load
    stamp = os.path.getmtime(os.path.join(folder, "model_index.json"))
    assert save_pipeline("sd-inpaint", folder) == folder      # kept, not rebuilt at real size
    assert os.path.getmtime(os.path.join(folder, "model_index.json")) == stamp


def test_cli_prints_counts(capsys):
    main(parse_args(["--architectures", "sd14"]))
    out = capsys.readouterr().out
    assert "| sd14 | CompVis/stable-diffusion-v1-4 | 512 | 859,520,964 | 80 / 43,962,560 |" in out
