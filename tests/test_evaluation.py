"""Issue 5's evaluation scripts and the shared metric code, on the toy model and tiny fixtures."""
import json
import os
import runpy
import sys

import numpy as np
import pytest

from spatial_erasure.evaluation.metrics import ClipJudge, ToyJudge, cached_generate, frechet_distance, psnr
from spatial_erasure.models import MODELS_DIR, TOY_MODEL, load_pipeline
from spatial_erasure.testing import save_tiny_clip

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")


def run_script(path, *argv):
    """Run an evaluation script's __main__ in-process; returns its exit code."""
    old = sys.argv
    sys.argv = [path, *argv]
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)   # a message exits 1
    finally:
        sys.argv = old
    return 0


def test_frechet_distance_zero_for_identical_sets_and_mean_shift_for_shifted():
    f = np.random.default_rng(0).normal(size=(200, 8))
    assert abs(frechet_distance(f, f)) < 1e-8
    shift = np.zeros(8)
    shift[:2] = [3.0, 4.0]                   # same covariance, mean moved by a vector of length 5
    assert frechet_distance(f, f + shift) == pytest.approx(25.0, rel=1e-6)
    with pytest.raises(ValueError):
        frechet_distance(f[:1], f[:1])


def test_psnr_inf_for_identical_and_known_value():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[1] = 255
    p = psnr(a, b)
    assert np.isinf(p[0])
    assert p[1] == pytest.approx(0.0)


def test_toy_judge_scores_the_base_model_high_on_its_own_target(tmp_path):
    pipe = load_pipeline(TOY_MODEL)
    prompts = ["Vincent van Gogh painting of a house", "a picture of a boat by Vincent van Gogh"] * 2
    images = cached_generate(pipe, prompts, [1, 2, 3, 4], str(tmp_path), "t", 20, 5.0)
    v = ToyJudge()(images)
    assert v.score("Vincent van Gogh").mean() > 0.8
    assert v.styles().count("Vincent van Gogh") >= 3
    assert len(os.listdir(tmp_path)) == 4                 # cached: a second call reads them back
    again = cached_generate(pipe, prompts, [1, 2, 3, 4], str(tmp_path), "t", 20, 5.0)
    assert np.array_equal(images, again)


def test_prompts_longer_than_the_text_encoder_get_one_note_not_a_warning_per_batch(capfd):
    from spatial_erasure.sampling import generate
    pipe = load_pipeline(TOY_MODEL)
    long = "a picture of a house by Vincent van Gogh, " + "on a quiet day seen from far away, " * 4
    images = generate(pipe, [long, "a house"] * 2, [1, 2, 3, 4], num_inference_steps=2, batch_size=2)
    out, err = capfd.readouterr()
    assert images.shape == (4, 64, 64, 3)
    assert out.count("note: 1 of 2 prompts are longer than the text encoder's 24 tokens") == 1, out
    assert "truncated" not in err, err[-500:]


def test_clip_judge_on_a_tiny_clip(tmp_path):
    folder = save_tiny_clip(str(tmp_path / "clip"))
    judge = ClipJudge(folder, ["Vincent van Gogh", "Claude Monet"], ["house", "boat"])
    v = judge(np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
    assert judge.style_names == ["Vincent van Gogh", "Claude Monet", "photo"]
    assert v.style_probs.shape == (3, 3)
    assert np.allclose(v.style_probs.sum(1), 1, atol=1e-5)
    assert v.subject_probs.shape == (3, 2)
    assert v.features.shape == (3, 16)
    assert np.allclose(np.linalg.norm(v.features, axis=1), 1, atol=1e-5)


def test_simple_vangogh_evaluation_on_the_toy_model(tmp_path):
    out = tmp_path / "simple"
    assert run_script("evaluation/simple_vangogh_evaluation.py", "--prompt", "a painting by Vincent van Gogh",
                      "--num_tests", "3", "--erasure", ESD_X, "--output", str(out)) == 0
    report = json.loads((out / "evaluation.json").read_text())
    assert len(report["rows"]) == 3
    assert os.path.exists(out / "comparison.png")
    assert report["mean_base_score"] > 0.8
    assert report["mean_erased_score"] < 0.2
    assert len(os.listdir(out / "images")) == 6
    assert run_script("evaluation/simple_vangogh_evaluation.py", "--num_tests", "0") != 0


@pytest.mark.slow
def test_concept_impact_48_tests_and_benchmark_table(tmp_path):
    out = tmp_path / "impact"
    code = run_script("evaluation/concept_impact.py", "--erasure", ESD_X, "--images_per_test", "1",
                      "--output", str(out), "--min_ira", "0.5", "--min_cra", "0.5")
    report = json.loads((out / "concept_impact.json").read_text())
    assert report["tests"] == 48
    assert len(report["rows"]) == 48
    cats = {s["category"]: s for s in report["summary"]}
    assert [cats[c]["tests"] for c in cats] == [8, 10, 10, 10, 10]
    assert cats["target concept"]["base"] < 0.2
    assert cats["target concept"]["erased"] >= 0.85   # UA
    assert code == (0 if report["all_pass"] else 1)
    for name in ("report.md", "summary.png", "target_concept.png", "nature_scenes.png"):
        assert os.path.exists(out / name), name
    assert "| target concept | UA |" in (out / "report.md").read_text()
    # the benchmark on the same images (reused bundled checkpoint, no training): its table parses
    bench = tmp_path / "bench.md"
    assert run_script("evaluation/benchmark.py", "--methods", "ESD-x", "--images_per_test", "1",
                      "--work_dir", str(out), "--output", str(bench)) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["base model", "ESD-x"]
    assert rows[1]["checkpoint"] == "reused"
    assert rows[1]["UA"] == pytest.approx(cats["target concept"]["erased"])
    assert rows[1]["tensors"] == 35
    assert rows[1]["FD"] > 0


def test_concept_impact_bad_prompt_folder(tmp_path, monkeypatch):
    (tmp_path / "toy_vangogh.csv").write_text("case_number,prompt,evaluation_seed\n0,x,1\n")
    monkeypatch.setattr(sys, "argv", ["concept_impact.py", "--erasure", ESD_X, "--prompts_dir", str(tmp_path),
                                      "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="expected_style"):
        runpy.run_path("evaluation/concept_impact.py", run_name="__main__")
    assert not os.path.exists(tmp_path / "o")


@pytest.mark.slow
def test_benchmark_trains_a_variant_with_its_own_flags_and_name(tiny_folders, tmp_path):
    from spatial_erasure.erasure_file import read_erasure
    assert run_script("evaluation/benchmark.py", "--methods", "ESD-x +preserve +robust", "--train_only",
                      "--base_model", tiny_folders["sd"], "--checkpoints", str(tmp_path)) == 0
    meta = read_erasure(str(tmp_path / "esd-Vincent_van_Gogh-esd-x-robust.safetensors"))[1]
    assert (meta["args"]["xt_source"], meta["args"]["preserve"], meta["args"]["preserve_kv"]) == ("stream", 200, 10)
    assert meta["args"]["robust"] is True
    assert meta["robust_attack_steps"] > 0
