"""The Python API (spatial_erasure.api): the README's example, run as written, and the API's own
contract (flags as keywords, errors as exceptions, the file the script writes)."""
import os
import re

import numpy as np
import pytest
import torch

from conftest import REPO
from spatial_erasure import Erasure, erase
from spatial_erasure.api import flags
from spatial_erasure.errors import InputError
from spatial_erasure.models import MODELS_DIR

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")


def readme_example():
    text = open(os.path.join(REPO, "README.md")).read()
    return re.search(r"<!-- python-example -->\n```python\n(.*?)```", text, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    before, after = np.asarray(scope["before"]), np.asarray(scope["after"])
    assert before.shape == after.shape
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1, "the erased model paints another picture"
    assert scope["erasure"].metadata["args"]["recipe"] == "recommended"
    assert os.path.exists(tmp_path / "vangogh.safetensors")
    assert os.path.exists(scope["lora"]["output"])


def test_keywords_are_the_trainers_flags():
    assert flags({"iterations": 5, "robust": True, "resume": False, "ranks": [1, 2], "lr": None}) == \
        ["--iterations", "5", "--robust", "--no-resume", "--ranks", "1", "2"]


def test_erase_trains_the_scripts_file_and_raises_on_bad_input(tiny_folders, tmp_path):
    out = tmp_path / "e.safetensors"
    e = erase("Vincent van Gogh", base_model=tiny_folders["sd"], output=out, iterations=2, num_inference_steps=4,
              variations=2, preserve=0)
    assert os.path.exists(out)
    assert e.metadata["iterations_done"] == 2
    assert e.metadata["method"] == "esd-x"
    assert e.tensors.keys() == Erasure.load(out).tensors.keys()
    with pytest.raises(InputError, match="--lr must be a finite number"):
        erase("x", base_model=tiny_folders["sd"], lr=-1)
    with pytest.raises(InputError, match="method"):
        erase("x", method="nope")


def test_an_erasure_applies_inside_a_block_and_for_good():
    from spatial_erasure.models import load_pipeline
    pipe = load_pipeline()
    e = Erasure.load(ESD_X)
    name = next(iter(e.tensors))
    own = dict(pipe.unet.named_parameters())
    base = own[name].detach().clone()
    with e.applied(pipe):
        assert torch.equal(own[name], e.tensors[name])
    assert torch.equal(own[name], base), "restored after the block"
    e.apply(pipe)
    assert torch.equal(own[name], e.tensors[name])
    assert "esd-x" in repr(e)
