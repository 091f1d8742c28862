"""The bundled toy model and classifier: format, size, offline loading, and their measured bars."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

from conftest import run

from spatial_erasure.evaluation.regions import classifier_ceiling, evaluation_masks
from spatial_erasure.evaluation.toy_model_quality import style_rates, vae_roundtrip
from spatial_erasure.models import TOY_CLASSIFIER, TOY_INPAINTING, TOY_MODEL, load_pipeline
from spatial_erasure.toyart.classifier import evaluate, grid_cells, load_classifier, predict, to_tensor
from spatial_erasure.toyart.painter import render, render_batch
from spatial_erasure.toyart.world import STYLES, SUBJECTS


@pytest.fixture(scope="module")
def clf():
    return load_classifier(TOY_CLASSIFIER)


def test_model_folder_is_a_standard_safetensors_pipeline_under_40mb():
    files = [os.path.join(r, f) for r, _, fs in os.walk(TOY_MODEL) for f in fs]
    names = {os.path.relpath(f, TOY_MODEL) for f in files}
    for part in ("unet", "vae", "text_encoder"):
        assert any(n.startswith(part + "/") and n.endswith(".safetensors") for n in names), part
    needed = {"model_index.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json"}
    assert needed <= names, needed - names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".ckpt", ".pth"))]
    assert sum(os.path.getsize(f) for f in files) <= 40 * 2**20


def test_loads_offline_with_plain_diffusers_classes():
    code = (f"from diffusers import StableDiffusionPipeline as P, StableDiffusionInpaintPipeline as I;"
            f"P.from_pretrained({TOY_MODEL!r}); I.from_pretrained({TOY_MODEL!r}); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    assert r.stdout.strip().endswith("ok"), r.stdout[-1000:]


def test_classifier_heldout_accuracy(clf):
    m = evaluate(clf, n=360, seed=30_000)
    assert m["style_acc"] >= 0.98, m
    assert m["subject_acc"] >= 0.98, m
    assert m["cell_style_acc"] >= 0.95, m


def test_classifier_sees_the_concept_inside_one_grid_cell(clf):
    # a Van Gogh image with one photo cell pasted in: that cell reads photo, the others Van Gogh
    vg, ph = render("Vincent van Gogh", "tree", seed=5), render("photo", "tree", seed=5)
    img = vg.copy()
    img[:21, :21] = ph[:21, :21]
    ps, _, _ = predict(clf, grid_cells(to_tensor(img[None])))
    labels = [STYLES[i] for i in ps.argmax(1).tolist()]
    assert labels[0] == "photo", labels
    assert labels[1:].count("Vincent van Gogh") >= 7, labels


def test_vae_round_trip_keeps_styles(clf):
    pipe = StableDiffusionPipeline.from_pretrained(TOY_MODEL)
    images, _, st, _ = render_batch(360, seed=40_000)
    rec = vae_roundtrip(pipe.vae, images)
    ps, _, _ = predict(clf, to_tensor(rec))
    assert (ps.argmax(1).numpy() == st).mean() >= 0.97, (ps.argmax(1).numpy() == st).mean()
    assert pipe.vae.config.scaling_factor > 0


def test_inpainting_pipeline_keeps_the_unmasked_latents():
    pipe = StableDiffusionInpaintPipeline.from_pretrained(TOY_MODEL)
    pipe.set_progress_bar_config(disable=True)
    img = torch.as_tensor(render("photo", "house", seed=1)).permute(2, 0, 1)[None].float() / 255
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    out = pipe("a painting of a house by Vincent van Gogh", image=img, mask_image=mask, num_inference_steps=10,
               generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    # outside the mask the blended loop reproduces the source (up to VAE error); inside it repaints
    outside = np.abs(out - img[0].permute(1, 2, 0).numpy())[mask[0, 0].numpy() == 0].mean()
    inside = np.abs(out - img[0].permute(1, 2, 0).numpy())[mask[0, 0].numpy() == 1].mean()
    assert inside > 2 * outside, (inside, outside)


@pytest.mark.slow
def test_quality_script_meets_every_bar(tmp_path):
    r = run(["-m", "spatial_erasure.evaluation.toy_model_quality", "--output", str(tmp_path), "--per_style", "16"],
            timeout=1200)
    with open(tmp_path / "quality.json") as f:
        report = json.load(f)
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    assert report["all_bars_met"], {k: v for k, v in report["bars"].items() if not v["met"]}
    assert r.returncode == 0, r.stderr[-2000:]
    assert "MISS" not in r.stdout, r.stdout[-2000:]


def test_toy_inpainting_model_is_9_channel_shares_the_toy_components_and_adds_under_10mb():
    own = [os.path.join(r, f) for r, _, fs in os.walk(TOY_INPAINTING) for f in fs]   # links not followed
    assert sum(os.path.getsize(f) for f in own) <= 10 * 2**20
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        assert os.path.islink(os.path.join(TOY_INPAINTING, part)), part
        assert os.path.samefile(os.path.join(TOY_INPAINTING, part), os.path.join(TOY_MODEL, part)), part
    pipe = StableDiffusionInpaintPipeline.from_pretrained(TOY_INPAINTING)
    assert pipe.unet.config.in_channels == 9, pipe.unet.config.in_channels
    assert pipe.unet.dtype == torch.float32, pipe.unet.dtype
    base = StableDiffusionPipeline.from_pretrained(TOY_MODEL)
    w9, w4 = pipe.unet.conv_in.weight, base.unet.conv_in.weight
    assert w9.shape[1] == 9, w9.shape
    assert w9[:, 4:].abs().sum() > 0, "the new channels were trained"
    assert not torch.equal(w9[:, :4], w4), "and the old ones fine-tuned"


def test_classifier_ceiling_is_full_in_grid_cells_and_lower_in_the_thin_stroke():
    masks, names, _ = evaluation_masks(64, 3000)
    ceiling = dict(zip(names, classifier_ceiling(load_classifier(TOY_CLASSIFIER), masks, ["house", "tree"], 3000)))
    assert len(ceiling) == 14, ceiling
    assert min(ceiling[f"cell{i}{j}"] for i in range(3) for j in range(3)) >= 0.9, ceiling
    assert ceiling["stroke"] < 0.9, ceiling     # a stroke's bounding box is mostly photo: the classifier's limit


def test_style_rates_report_subjects_per_style(clf):
    r = style_rates(load_pipeline(), clf, ["Vincent van Gogh", "photo"], 3, seed=0, steps=8)
    by = r["subject_acc_by_style"]
    assert set(by) == {"Vincent van Gogh", "photo"}, by
    assert all(0 <= v <= 1 for v in by.values()), by
    hits = r["subject_pred"] == np.array([SUBJECTS.index(u) for _, u in r["jobs"]])
    assert by["photo"] == hits[3:].mean(), (by, hits)
    assert np.isclose(np.mean(list(by.values())), r["generated_subject_acc"]), "the per-style rates average out"
