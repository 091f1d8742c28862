"""The erasure file: save, read, apply (checked), the base model it records, and one-line errors."""
import os
import pickle

import pytest
import torch
from conftest import load_script, one_error_line, run

from spatial_erasure.erasure_file import (ErasureFileError, ErasureMismatch, apply_erasure, erased, latest_erasure,
                                          read_erasure, record_base, recorded_base, save_erasure)
from spatial_erasure.models import MODELS_DIR, REPO_ROOT, TOY_MODEL, fingerprint, load_pipeline
from spatial_erasure.selection import select_parameters
from spatial_erasure.testing import save_tiny_pipeline

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")


def test_save_apply_round_trip_reproduces_the_trained_unet(tmp_path):
    folder = save_tiny_pipeline("sd", str(tmp_path / "sd"))
    trained = load_pipeline(folder)
    params = select_parameters(trained.unet, "esd-x")
    with torch.no_grad():
        for p in params.values():
            p.add_(0.05 * torch.randn_like(p))
    path = str(tmp_path / "esd.safetensors")
    save_erasure(path, params, {"base_model": folder, "base_fingerprint": "will be replaced", "method": "esd-x"})
    tensors, meta = read_erasure(path)
    assert set(tensors) == set(params), "exactly the trained tensors"
    assert all(t.dtype == torch.float32 for t in tensors.values()), "saved in fp32"
    assert meta["method"] == "esd-x", meta

    base = load_pipeline(folder)
    save_erasure(path, params, {"base_model": folder, "base_fingerprint": fingerprint(base.unet)})
    apply_erasure(base, path)
    x, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 5, 32)
    with torch.no_grad():
        assert torch.allclose(base.unet(x, t, c).sample, trained.unet(x, t, c).sample, atol=1e-6)


def test_file_for_another_base_model_is_refused(tmp_path):
    a = load_pipeline(save_tiny_pipeline("sd", str(tmp_path / "a"), seed=0))
    b = load_pipeline(save_tiny_pipeline("sd", str(tmp_path / "b"), seed=1))
    path = str(tmp_path / "esd.safetensors")
    save_erasure(path, select_parameters(a.unet, "esd-x"), {"base_model": "a", "base_fingerprint": fingerprint(a.unet)})
    with pytest.raises(ErasureMismatch) as e:
        apply_erasure(b, path)
    assert fingerprint(a.unet) in str(e.value), "the message names the recorded fingerprint"
    assert fingerprint(b.unet) in str(e.value), "and the pipeline's"
    xl = load_pipeline(save_tiny_pipeline("sdxl", str(tmp_path / "xl")))
    with pytest.raises(ErasureMismatch, match="does not fit"):
        apply_erasure(xl, path, check_base=False)


def test_bundled_models_are_recorded_relative_to_the_repo_and_resolved_back():
    assert record_base(TOY_MODEL) == "models/toyart-sd"
    assert record_base(os.path.relpath(TOY_MODEL)) == "models/toyart-sd", "however the folder was spelled"
    assert record_base("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4", "hub ids as given"
    assert recorded_base({"base_model": "models/toyart-sd"}) == str(REPO_ROOT / "models/toyart-sd")
    # a file from before: the training machine's absolute path, not here -> the bundled folder of that name
    assert recorded_base({"base_model": "/elsewhere/checkout/models/toyart-sd"}) == TOY_MODEL
    assert recorded_base({"base_model": "CompVis/stable-diffusion-v1-4"}) == "CompVis/stable-diffusion-v1-4"
    bundled = recorded_base(read_erasure(ESD_X)[1])    # recorded as an absolute path of the training machine
    assert os.path.basename(bundled) == "toyart-sd", bundled
    assert os.path.isdir(bundled), bundled


# each script, given a pickle renamed .safetensors as its erasure file: (script, arguments before the file)
PROMPTS = os.path.join(REPO_ROOT, "prompts", "toy_vangogh.csv")
BAD_FILE_SCRIPTS = [("original_esd/generate_images.py", ["--prompts_path", PROMPTS, "--erasure"]),
                    ("inpainting_erasure/inpaint.py", ["--source_prompt", "a house", "--mask", "4", "--prompt", "x",
                                                       "--erasure"]),
                    ("evaluation/simple_vangogh_evaluation.py", ["--erasure"]),
                    ("evaluation/concept_impact.py", ["--erasure"]),
                    ("evaluation/toy_erasure_rates.py", ["--erasure"]),
                    ("evaluation/spatial_evaluation.py", ["--erasures"]),
                    ("evaluation/weight_change_analysis.py", [])]


def test_a_file_that_is_not_safetensors_is_one_line_everywhere(tmp_path):
    fake = tmp_path / "models" / "esd-fake.safetensors"
    fake.parent.mkdir()
    with open(fake, "wb") as f:
        pickle.dump({"a": [1, 2, 3] * 100}, f)
    pipe = load_pipeline(save_tiny_pipeline("sd", str(tmp_path / "sd")))
    for call in (lambda: read_erasure(str(fake)), lambda: apply_erasure(pipe, str(fake)),
                 lambda: erased(pipe, str(fake)).__enter__(), lambda: latest_erasure("x", str(fake.parent))):
        with pytest.raises(ErasureFileError, match="is not a safetensors file") as e:
            call()
        assert "\n" not in str(e.value), str(e.value)
        assert "pass an erasure file" in str(e.value), str(e.value)
    for script, argv in BAD_FILE_SCRIPTS:      # in-process: each fails before it loads or generates anything
        module = load_script(script)
        with pytest.raises(SystemExit) as e:
            module.main(module.parse_args([*argv, str(fake), "--output", str(tmp_path / "out")]))
        message = str(e.value.code)
        assert message.startswith("error: "), (script, message)
        assert "is not a safetensors file" in message, (script, message)
        assert not (tmp_path / "out").exists(), f"{script} wrote output"
    # as a user sees it: one line on stderr, exit status 1, no traceback
    r = run(["evaluation/simple_vangogh_evaluation.py", "--erasure", str(fake)])
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = one_error_line(r)
    assert len(errors) == 1, r.stderr[-2000:]
    assert "is not a safetensors file" in errors[0], r.stderr[-2000:]
