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
    from spatial_erasure import esd
    assert flags(esd.build_parser(), {"iterations": 5, "robust": True, "resume": False, "restart": False,
                                      "print_config": True, "lr": None}) == \
        ["--iterations", "5", "--robust", "--no-resume", "--print-config"]


@pytest.mark.parametrize("options,words", [
    ({"bogus_kw": 1}, ["no keyword 'bogus_kw'"]),
    ({"iteratons": 5}, ["no keyword 'iteratons'", "did you mean 'iterations'"]),
    ({"iterations": "many"}, ["iterations='many'", "not a valid int"]),
    ({"train_method": "esd-q"}, ["train_method='esd-q'", "choose one of", "esd-x"]),
    ({"robust": "yes"}, ["robust='yes'", "True or False"]),
    ({"erase_concept": "Claude Monet"}, ["its own argument"]),
])
def test_bad_keywords_raise_in_the_callers_terms_and_print_nothing(options, words, capsys, tmp_path):
    out = tmp_path / "e.safetensors"
    with pytest.raises(InputError) as e:
        erase("Vincent van Gogh", output=out, **options)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert "\n" not in str(e.value) and "--" not in str(e.value).split(";")[0]
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "", "no argparse usage on the API path"
    assert not out.exists()


def test_an_erasure_on_another_model_names_the_callers_objects(tiny_folders):
    from spatial_erasure.models import load_pipeline
    pipe = load_pipeline(tiny_folders["sd"])
    e = Erasure.load(ESD_X)
    for use in (e.apply, lambda p: e.applied(p).__enter__()):
        with pytest.raises(InputError) as err:
            use(pipe)
        message = str(err.value)
        assert message.startswith("this Erasure was trained on models/toyart-sd"), message
        assert "load it onto that model" in message and "--base_model" not in message
        assert "erasure.safetensors" not in message


def test_save_refuses_non_finite_tensors(tmp_path):
    e = Erasure.load(ESD_X)
    name = next(iter(e.tensors))
    for bad in (float("nan"), float("inf")):
        broken = Erasure({**e.tensors, name: e.tensors[name].clone().fill_(bad)}, e.metadata)
        with pytest.raises(InputError, match="NaN or Inf"):
            broken.save(tmp_path / "x.safetensors")
        assert not list(tmp_path.iterdir()), "nothing written, no temporary"


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
    with pytest.raises(InputError, match="already exists; pass --overwrite"):   # a finished file is kept
        erase("Vincent van Gogh", base_model=tiny_folders["sd"], output=out, iterations=2)
    again = erase("Vincent van Gogh", base_model=tiny_folders["sd"], output=out, overwrite=True, iterations=1,
                  num_inference_steps=4, variations=2, preserve=0)
    assert again.metadata["iterations_done"] == 1


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
