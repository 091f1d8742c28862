import os

import pytest
import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionInpaintPipeline, StableDiffusionXLPipeline

from spatial_erasure.architectures import (ARCHITECTURES, FLOW_ARCHITECTURES, build_pipeline, build_transformer,
                                           build_unet, count_parameters, main, parse_args, save_pipeline)
from spatial_erasure.families import sd3
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


def linear(d_in, d_out):
    return d_in * d_out + d_out


@pytest.mark.parametrize("name, total, blocks, width", [
    ("sd3-medium", 2_028_328_000, 24, 1536),      # the "2B" of SD3 medium
    ("sd3.5-large", 8_056_627_520, 38, 2432),     # the "8B" of SD3.5 large
    ("flux-dev", 11_901_408_320, 19, 3072),       # the "12B" of Flux.1 dev; 19 double-stream blocks
])
def test_meta_transformer_counts_are_the_public_models(name, total, blocks, width):
    counts = count_parameters(name)
    assert counts["total"] == total == counts["esd-all"]["parameters"]
    # the text stream's key and value projections: two width x width Linears (with bias) per joint block
    assert counts["esd-x-strict"] == {"tensors": 4 * blocks, "parameters": 2 * blocks * linear(width, width)}
    assert counts["esd-x-strict"]["parameters"] < counts["esd-x-text"]["parameters"] < counts["esd-x"]["parameters"]
    assert counts["esd-u"]["parameters"] + counts["esd-x"]["parameters"] <= total
    assert next(build_transformer(name).parameters()).device.type == "meta"


def test_the_flow_docs_tables_are_what_the_meta_device_counts():
    """Every row of docs/flow.md's real-size tables, cell by cell, against count_parameters."""
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "flow.md")) as f:
        lines = [line.strip() for line in f if line.startswith("|")]
    checked = set()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in FLOW_ARCHITECTURES:
            continue
        header = next([c.strip() for c in h.strip("|").split("|")] for h in reversed(lines[:i])
                      if h.startswith("| architecture"))
        counts = count_parameters(cells[0])
        assert int(cells[header.index("parameters")].replace(",", "")) == counts["total"]
        for method, cell in zip(header, cells):
            if method in counts:
                tensors, params = (int(x.replace(",", "")) for x in cell.split(" / "))
                assert (tensors, params) == (counts[method]["tensors"], counts[method]["parameters"]), method
        checked.add(cells[0])
    assert checked == set(FLOW_ARCHITECTURES), checked


def test_sd3_pipeline_has_the_real_widths_and_round_trips(tmp_path):
    """One joint block of SD3-medium's real width behind the tiny CLIPs: saved, loaded by load_pipeline
    (T5 absent), encoded to the joint width and the 2048 pooled width, one velocity call."""
    folder = save_pipeline("sd3-medium", str(tmp_path / "sd3"), unet_overrides=dict(num_layers=1))
    pipe = load_pipeline(folder)
    assert pipe.text_encoder_3 is None and pipe.transformer.config.caption_projection_dim == 1536
    cond = encode(pipe, ["a house", "a boat"])
    assert cond.emb.shape == (2, pipe.tokenizer.model_max_length + 256, 4096) and cond.pooled.shape == (2, 2048)
    v = sd3.predict(pipe.transformer, torch.randn(2, 16, 8, 8), 500.0, cond)
    assert v.shape == (2, 16, 8, 8) and torch.isfinite(v).all()
    with pytest.raises(ValueError, match="counted on the meta device"):
        build_pipeline("flux-dev")


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
