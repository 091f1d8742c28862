"""Decoder fine-tune of the toy VAE on mixed-style composites: what it trains, resume, the check, the CLI."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from conftest import run
from diffusers import AutoencoderKL

from spatial_erasure.models import TOY_CLASSIFIER, TOY_MODEL
from spatial_erasure.toyart.classifier import load_classifier
from spatial_erasure.toyart.composites import batch, scene_bank
from spatial_erasure.toyart.vae import composite_check, make_vae, recon_loss, save_vae, tune_decoder
from spatial_erasure.toyart.world import RES, STYLES


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return scene_bank(3, 0, str(tmp_path_factory.mktemp("scenes") / "scenes.safetensors"))


def test_composites_mix_two_styles_of_one_scene_through_the_mask(scenes):
    images, subjects = scenes
    assert images.shape == (3, len(STYLES), RES, RES, 3)
    assert images.dtype == np.uint8
    x, masks, caps = batch(np.random.default_rng(0), images, subjects, 16, same_style=0, uncond_prob=0)
    assert x.shape == (16, 3, RES, RES)
    assert masks.shape == (16, 1, RES, RES)
    assert len(caps) == 16
    assert all(caps)                                      # uncond_prob=0: no empty captions
    # every composite equals one styled render inside its mask and another outside
    flat = torch.as_tensor(images).permute(0, 1, 4, 2, 3).float().div(127.5).sub(1).flatten(0, 1)
    for img, m in zip(x, masks[:, 0] > 0.5):
        for region in (m, ~m):
            if region.any():
                diff = (flat - img).abs().amax(1)[:, region].amax(1)
                assert diff.min() < 1e-6


def test_recon_loss_weight_zero_means_no_gradient_there():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    rec = torch.zeros_like(x, requires_grad=True)
    w = torch.zeros(2, 1, 16, 16)
    w[..., 8:] = 1                                        # right half counts, left half does not
    recon_loss(rec, x, w).backward()
    assert rec.grad[..., :7].abs().max() == 0             # columns 0..6: not even an edge pair touches w=1
    assert rec.grad[..., 9:].abs().min() > 0
    assert torch.allclose(recon_loss(rec, x, torch.ones(2, 1, 16, 16)), recon_loss(rec, x))


def test_tune_decoder_trains_only_the_decoder_and_resumes(scenes, tmp_path, capsys):
    images, subjects = scenes
    torch.manual_seed(0)
    vae = make_vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    state = str(tmp_path / "decoder.safetensors")
    assert tune_decoder(vae, images, subjects, 2, state, batch_size=4, checkpoint_every=1) == 2
    after = vae.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed
    assert all(k.startswith(("decoder.", "post_quant_conv.")) for k in changed)
    assert any(k.startswith("decoder.conv_out") for k in changed)
    assert not vae.training
    assert not any(p.requires_grad for p in vae.parameters())
    assert tune_decoder(vae, images, subjects, 3, state, batch_size=4) == 3
    assert "resumed decoder at step 2" in capsys.readouterr().out
    out = str(tmp_path / "vae")
    os.makedirs(out)                                      # save_vae replaces an existing folder
    save_vae(vae, out)
    back = AutoencoderKL.from_pretrained(out, use_safetensors=True)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in vae.state_dict().items())
    assert not os.path.exists(out + ".tmp")
    assert not os.path.exists(out + ".old")


def test_composite_check_on_the_bundled_vae(scenes):
    images, _ = scenes
    vae = AutoencoderKL.from_pretrained(os.path.join(TOY_MODEL, "vae"), use_safetensors=True)
    r = composite_check(vae, load_classifier(TOY_CLASSIFIER), images[:2])
    assert r["cases_per_style"] == 20
    for name in ("pasted", "roundtrip", "full_image_roundtrip"):
        assert set(r[name]) == set(STYLES)
        assert all(0 <= v <= 1 for v in r[name].values())
    # pasted cells (no VAE) are what the classifier is built for; whole images survive the VAE
    assert np.mean(list(r["pasted"].values())) >= 0.9
    assert np.mean(list(r["full_image_roundtrip"].values())) >= 0.9


@pytest.mark.slow
def test_cli_tunes_a_copy_of_the_toy_model_in_place(tmp_path):
    model = str(tmp_path / "toy")
    shutil.copytree(TOY_MODEL, model)
    old = AutoencoderKL.from_pretrained(os.path.join(model, "vae"), use_safetensors=True).state_dict()
    r = run(["-m", "spatial_erasure.toyart.vae", "--base_model", model, "--work_dir", str(tmp_path / "w"),
             "--output", str(tmp_path / "out"), "--steps", "2", "--batch_size", "4", "--scenes", "3",
             "--check_scenes", "1"], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(tmp_path / "out" / "decoder.json") as f:
        report = json.load(f)
    assert report["steps_done"] == 2, report["steps_done"]
    assert set(report["after"]["roundtrip"]) == set(STYLES), report["after"]["roundtrip"]
    new = AutoencoderKL.from_pretrained(os.path.join(model, "vae"), use_safetensors=True).state_dict()
    assert all(torch.equal(new[k], old[k]) for k in old if k.startswith(("encoder.", "quant_conv."))), "encoder kept"
    assert not torch.equal(new["decoder.conv_out.weight"], old["decoder.conv_out.weight"]), "decoder tuned"
    bad = run(["-m", "spatial_erasure.toyart.vae", "--base_model", str(tmp_path / "nope")], timeout=300)
    assert bad.returncode != 0, bad.stderr[-2000:]
    assert "no vae/config.json" in bad.stderr, bad.stderr[-2000:]
