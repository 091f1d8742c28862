import json
import os
import shutil

import numpy as np
import pytest
import torch
from diffusers import StableDiffusion3Pipeline
from safetensors.torch import load_file

from spatial_erasure.models import load_pipeline
from spatial_erasure.prompts import encode
from spatial_erasure.sampling import generate
from spatial_erasure.toyart import train_sd3

TINY = ["--bank_size", "256", "--layers", "1", "--heads", "2", "--head_dim", "8", "--text_widths", "16", "32",
        "--text_layers", "2", "--batch_size", "4", "--warmup", "1", "--checkpoint_every", "2", "--save_every", "2"]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """One latent bank (256 rendered images through the toy VAE), shared by every run below."""
    work = tmp_path_factory.mktemp("bank")
    train(str(work / "out"), str(work), 1)
    return str(work / "bank.safetensors")


def train(out, work, steps, bank=None):
    if bank:
        os.makedirs(work, exist_ok=True)
        shutil.copy(bank, os.path.join(work, "bank.safetensors"))
    train_sd3.main(train_sd3.parse_args(["--output", out, "--work_dir", work, "--steps", str(steps), *TINY]))


def test_train_sd3_writes_a_pipeline_that_samples(tmp_path, bank):
    out = str(tmp_path / "sd3")
    train(out, str(tmp_path / "work"), 2, bank)
    with open(os.path.join(out, "training.json")) as f:
        info = json.load(f)
    assert info["steps_done"] == 2 and info["max_sequence_length"] == 8, info
    for name in ("tokenizer", "tokenizer_2"):
        assert set(os.listdir(os.path.join(out, name))) >= {"vocab.json", "merges.txt"}
    assert not [f for _, _, fs in os.walk(out) for f in fs if f.endswith((".bin", ".pt", ".ckpt"))], "safetensors only"
    # diffusers 0.42 drops null components of model_index.json and then misses them: without T5 a saved SD3
    # folder loads as stabilityai's does without it, with text_encoder_3=None, tokenizer_3=None passed
    with pytest.raises(ValueError, match="text_encoder_3"):
        StableDiffusion3Pipeline.from_pretrained(out)
    pipe = StableDiffusion3Pipeline.from_pretrained(out, text_encoder_3=None, tokenizer_3=None)
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert pipe.tokenizer.model_max_length == pipe.tokenizer_2.model_max_length == 24
    # the bank's latents are zero-mean unit-variance after SD3's (z - shift_factor) * scaling_factor
    z = load_file(bank)["latents"]
    x = (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-4
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a painting of a house by Vincent van Gogh", num_inference_steps=2, output_type="np",
                 max_sequence_length=info["max_sequence_length"], generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 64, 64, 3), image.shape
    assert np.isfinite(image).all() and image.std() > 0


def test_train_sd3_resumes_bit_for_bit(tmp_path, bank):
    whole, halves = str(tmp_path / "whole"), str(tmp_path / "halves")
    train(str(tmp_path / "out_whole"), whole, 4, bank)
    train(str(tmp_path / "out_halves"), halves, 2, bank)
    train(str(tmp_path / "out_halves"), halves, 4, bank)     # same command, more steps: resumes at step 2
    a = load_file(os.path.join(whole, "transformer.safetensors"))
    b = load_file(os.path.join(halves, "transformer.safetensors"))
    assert a.keys() == b.keys()
    # weights, EMA weights and optimizer moments alike
    changed = [k for k in a if not torch.equal(a[k], b[k])]
    assert not changed, changed[:5]
    assert a["transformer.proj_out.weight"].abs().sum() > 0, "the zero-initialised output layer never moved"
    exported = [load_file(os.path.join(tmp_path / o, "transformer", "diffusion_pytorch_model.safetensors"))
                for o in ("out_whole", "out_halves")]
    assert all(torch.equal(v, exported[1][k]) for k, v in exported[0].items()), "EMA exports differ"


def test_the_recorded_t5_length_reaches_every_call(tmp_path, bank):
    """The toy trains with 8 zero tokens for T5; model_index.json records it and load_pipeline keeps it, so
    this toolkit's encoding and sampling use 8 where a bare pipeline call would use 256."""
    out = str(tmp_path / "sd3")
    train(out, str(tmp_path / "work"), 2, bank)
    with open(os.path.join(out, "model_index.json")) as f:
        assert json.load(f)["_max_sequence_length"] == 8
    assert load_pipeline(out).config["_max_sequence_length"] == 8
    pipe = load_pipeline("models/toyart-sd3")                  # the bundled toy, whose text attention is trained
    assert pipe.config["_max_sequence_length"] == 8
    assert encode(pipe, ["a house"]).emb.shape[1] == 24 + 8
    prompt, kw = ["a painting of a house by Vincent van Gogh"], dict(num_inference_steps=2, guidance_scale=3.0)
    assert np.array_equal(generate(pipe, prompt, [0], **kw), generate(pipe, prompt, [0], max_sequence_length=8, **kw))
    by_hand = [pipe(prompt, generator=torch.Generator().manual_seed(0), output_type="latent",
                    max_sequence_length=n, **kw).images for n in (8, 256)]
    assert (by_hand[0] - by_hand[1]).abs().max() > 0.05, "the T5 length should matter to this model"


def test_a_further_stage_starts_from_a_pipeline_folder(tmp_path, bank):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    train(first, str(tmp_path / "w1"), 2, bank)
    os.makedirs(tmp_path / "w2")
    shutil.copy(bank, tmp_path / "w2" / "bank.safetensors")
    argv = ["--output", second, "--work_dir", str(tmp_path / "w2"), "--steps", "2", *TINY]
    train_sd3.main(train_sd3.parse_args([*argv, "--lr", "0", "--init_from", first]))
    with open(os.path.join(second, "training.json")) as f:
        info = json.load(f)
    assert info["steps_before"] == 2 and info["steps_done"] == 2
    a, b = (load_file(os.path.join(o, "transformer", "diffusion_pytorch_model.safetensors")) for o in (first, second))
    assert all(torch.equal(v, b[k]) for k, v in a.items()), "lr 0: the second stage keeps the first's weights"
    with pytest.raises(SystemExit, match="does not match these sizes"):
        train_sd3.main(train_sd3.parse_args([*argv, "--init_from", first, "--layers", "2",
                                             "--work_dir", str(tmp_path / "w3")]))
