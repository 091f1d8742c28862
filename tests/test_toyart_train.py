import json
import os
import shutil

import pytest

from conftest import run

from spatial_erasure.models import architecture, load_pipeline


def run_train(out, work, unet_steps, *extra):
    r = run(["-m", "spatial_erasure.toyart.train_sd", "--output", out, "--work_dir", work, "--vae_steps", "3",
             "--vae_batch_size", "4", "--decoder_steps", "2", "--decoder_scenes", "3", "--bank_size", "256",
             "--unet_steps", str(unet_steps), "--unet_channels", "16", "32", "32", "--batch_size", "4",
             "--checkpoint_every", "2", "--save_every", "2", *extra], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout + r.stderr


@pytest.mark.slow
def test_train_writes_a_standard_pipeline_and_resumes(tmp_path):
    out, work = str(tmp_path / "sd"), str(tmp_path / "work")
    run_train(out, work, 2)
    with open(os.path.join(out, "training.json")) as f:
        assert json.load(f)["unet_steps_done"] == 2
    log = run_train(out, work, 4)                       # same command, more steps: resumes, VAE done
    for stage in ("VAE at step 3", "decoder at step 2", "UNet at step 2"):
        assert f"resumed {stage}" in log, (stage, log[-2000:])
    with open(os.path.join(out, "training.json")) as f:
        assert json.load(f)["unet_steps_done"] == 4
    assert set(os.listdir(os.path.join(out, "tokenizer"))) >= {"vocab.json", "merges.txt"}
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith((".bin", ".pt", ".ckpt"))], "safetensors only"
    # a later sitting without the work folder continues from the exported pipeline
    init = str(tmp_path / "sd_copy")
    shutil.copytree(out, init)
    # ... here with half of each batch from mixed-style composites and a fresh learning-rate schedule
    log = run_train(out, str(tmp_path / "fresh_work"), 6, "--init_from", init, "--composite_share", "0.5",
                    "--lr_restart")
    for says in ("resumed VAE at step 3", "resumed decoder at step 2", "initialised from", "at UNet step 4"):
        assert says in log, (says, log[-2000:])
    with open(os.path.join(out, "training.json")) as f:
        info = json.load(f)
    assert info["unet_steps_done"] == 6, info["unet_steps_done"]
    assert info["args"]["composite_share"] == 0.5, info["args"]
    pipe = load_pipeline(out)
    assert architecture(pipe.unet) == "sd", architecture(pipe.unet)
    assert pipe.tokenizer.model_max_length == 24, pipe.tokenizer.model_max_length
    # the VAE's scaling factor makes the latents unit-variance, as SD's 0.18215 does
    assert pipe.vae.config.scaling_factor != 0.18215
