"""One command line: every script's --help works and shows defaults, every script's output flag is
--output (--save_path also for the ESD scripts and generate_images.py), errors are one line."""
import importlib

import pytest
from conftest import load_script

from spatial_erasure import cli
from spatial_erasure.errors import InputError

SCRIPTS = ["original_esd/esd_sd.py", "original_esd/esd_sdxl.py", "original_esd/esd_sd3.py", "original_esd/esd_flux.py",
           "original_esd/generate_images.py",
           "inpainting_erasure/grid_erasure.py", "inpainting_erasure/scaled_grid_erasure.py",
           "inpainting_erasure/inpaint.py", "evaluation/benchmark.py", "evaluation/concept_impact.py",
           "evaluation/simple_vangogh_evaluation.py", "evaluation/spatial_evaluation.py",
           "evaluation/twin_evaluation.py", "evaluation/collateral_evaluation.py", "evaluation/attack_evaluation.py",
           "evaluation/toy_erasure_rates.py", "evaluation/weight_change_analysis.py"]
# `python -m` entry points: module -> how its parser is reached
MODULES = {"spatial_erasure.evaluation.toy_model_quality": "parse_args",
           "spatial_erasure.evaluation.toy_inpainting_quality": "parse_args",
           "spatial_erasure.export": "parse_args", "spatial_erasure.architectures": "parse_args",
           "spatial_erasure.toyart.train_sd": "parse_args", "spatial_erasure.toyart.train_sd_inpainting": "parse_args",
           "spatial_erasure.toyart.vae": "parse_args", "spatial_erasure.toyart.classifier": "main",
           "spatial_erasure.toyart.tokenizer": "main", "spatial_erasure.masks": "main",
           "spatial_erasure.phrasings": "main"}


def help_text(fn, capsys):
    with pytest.raises(SystemExit) as e:
        fn(["--help"])
    assert e.value.code == 0, e.value.code
    return capsys.readouterr().out


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_has_help_with_defaults_and_one_output_flag(script, capsys):
    module = load_script(script)
    parse = module.parse_args if script != "inpainting_erasure/scaled_grid_erasure.py" else \
        importlib.import_module("spatial_erasure.grid_erasure").parse_args
    text = help_text(parse, capsys)
    assert "(default:" in text, "defaults are shown"
    assert "--output" in text, "the output flag is --output"
    assert not any(f" {flag} " in text for flag in ("--out", "--model")), "no second name for output or model"
    if script in ("original_esd/esd_sd.py", "original_esd/esd_sdxl.py", "original_esd/generate_images.py"):
        assert "--save_path" in text, "the reference ESD repo's name is accepted too"


@pytest.mark.parametrize("name", MODULES)
def test_every_module_cli_has_help(name, capsys):
    fn = getattr(importlib.import_module(name), MODULES[name])
    text = help_text(fn, capsys)
    if name != "spatial_erasure.architectures":       # the one that only prints a table
        assert "--output" in text, f"{name}: the output flag is --output"
    assert " --out " not in text, f"{name}: no second name for the output flag"


@pytest.mark.parametrize("script,trainer", [("original_esd/esd_sd.py", "esd"),
                                            ("inpainting_erasure/grid_erasure.py", "grid")])
def test_help_says_what_each_recipe_sets(script, trainer, capsys):
    from spatial_erasure.recipes import RECIPES
    text = " ".join(help_text(load_script(script).parse_args, capsys).split())
    for name, recipe in RECIPES[trainer].items():
        assert f"{name}: {recipe.about}" in text, name
        assert all(f"{k} {v}" in text for k, v in recipe.values.items()), name
    assert "(default: recommended)" in text
    assert "set by --recipe" in text


def test_save_path_is_the_same_flag_as_output(tmp_path):
    esd = load_script("original_esd/esd_sd.py")
    a = esd.parse_args(["--erase_concept", "x", "--save_path", str(tmp_path)])
    b = esd.parse_args(["--erase_concept", "x", "--output", str(tmp_path)])
    assert a.output == b.output == str(tmp_path), (a.output, b.output)
    assert not hasattr(a, "save_path"), "one destination"


def test_device_flag_has_one_default_everywhere(capsys):
    for script in ("original_esd/esd_sd.py", "evaluation/concept_impact.py", "inpainting_erasure/inpaint.py"):
        text = " ".join(help_text(load_script(script).parse_args, capsys).split())
        assert "cuda if available, else cpu" in text, script


def test_an_input_error_is_one_line_and_exit_status_1():
    @cli.reports_errors
    def main(args):
        raise InputError("the prompt CSV lacks a column; add case_number")
    with pytest.raises(SystemExit) as e:
        main(None)
    assert e.value.code == "error: the prompt CSV lacks a column; add case_number", e.value.code
