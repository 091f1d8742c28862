import os
import subprocess
import sys

import pytest
import torch

from spatial_erasure.models import ModelLoadError, architecture, describe, fingerprint, load_pipeline


@pytest.mark.parametrize("kind,task,cls", [
    ("sd", "text2img", "StableDiffusionPipeline"), ("sd", "inpaint", "StableDiffusionInpaintPipeline"),
    ("sd-inpaint", "inpaint", "StableDiffusionInpaintPipeline"), ("sdxl", "text2img", "StableDiffusionXLPipeline")])
def test_tiny_pipelines_round_trip_through_load_pipeline(tiny_folders, kind, task, cls):
    pipe = load_pipeline(tiny_folders[kind], task=task)
    assert type(pipe).__name__ == cls
    assert architecture(pipe.unet) == kind
    assert pipe.unet.config.in_channels == (9 if kind == "sd-inpaint" else 4)
    g = torch.Generator().manual_seed(0)
    kw = {}
    if task == "inpaint":
        kw = dict(image=torch.zeros(1, 3, 32, 32), mask_image=torch.ones(1, 1, 32, 32))
    out = pipe("a house", num_inference_steps=2, generator=g, output_type="np", **kw).images
    assert out.shape == (1, 32, 32, 3)
    assert 0 <= out.min()
    assert out.max() <= 1
    assert tiny_folders[kind] in describe(pipe)


def test_fingerprint_survives_save_and_load_and_sees_changes(tiny_folders, tmp_path):
    a = load_pipeline(tiny_folders["sd"])
    b = load_pipeline(tiny_folders["sd"], dtype=torch.float16)
    assert fingerprint(a.unet) == fingerprint(b.unet)
    with torch.no_grad():
        next(iter(a.unet.parameters()))[0].add_(1e-2)
    assert fingerprint(a.unet) != fingerprint(b.unet)
    assert fingerprint(load_pipeline(tiny_folders["sd-inpaint"]).unet) != fingerprint(b.unet)


def test_bad_model_arguments_fail_in_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="not a diffusers pipeline"):
        load_pipeline(str(tmp_path))
    with pytest.raises(ModelLoadError) as e:
        load_pipeline("CompVis/stable-diffusion-v1-4")     # HF_HUB_OFFLINE=1 here: unreachable
    msg = str(e.value)
    assert "\n" not in msg
    assert "--base_model FOLDER" in msg
    assert "CompVis/stable-diffusion-v1-4" in msg


def test_unreachable_hub_exits_nonzero_from_a_script():
    code = "from spatial_erasure.models import load_pipeline; load_pipeline('CompVis/stable-diffusion-v1-4')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode != 0
    assert "pass --base_model FOLDER" in r.stderr.strip().splitlines()[-1]
