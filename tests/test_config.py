"""--config retrains from a recorded config (an erasure file, its JSON log, or a JSON dict of flags),
flags given override it, and --print-config shows the resolved settings and exits."""
import json

import pytest
from conftest import assert_error_line

from spatial_erasure import esd, grid_erasure, training_flags
from spatial_erasure.configs import EsdConfig, GridConfig
from spatial_erasure.erasure_file import read_erasure
from spatial_erasure.models import MODELS_DIR

RECOMMENDED = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-recommended.safetensors")
GRID = str(MODELS_DIR / "grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors")
PATHS = {"output", "save_path", "base_model", "device", "resume", "restart", "config", "print_config"}


@pytest.mark.parametrize("module, path", [(esd, RECOMMENDED), (grid_erasure, GRID)])
def test_an_erasure_files_config_is_its_recorded_arguments_and_flags_override_it(module, path, tmp_path):
    recorded = read_erasure(path)[1]["args"]
    args = module.parse_args(["--config", path, "--output", str(tmp_path / "x.safetensors")])
    common = (set(recorded) & set(args.settings())) - PATHS
    assert len(common) >= 20, common
    differ = {k: (args.settings()[k], recorded[k]) for k in common if args.settings()[k] != recorded[k]}
    assert not differ, differ
    assert args.output == str(tmp_path / "x.safetensors"), "the output is never carried over"
    mine = module.parse_args(["--config", path, "--seed", "7", "--iterations", "3",
                              "--output", str(tmp_path / "y.safetensors")])
    assert (mine.seed, mine.iterations) == (7, 3)


def test_a_json_config_and_print_config(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"erase_concept": "Claude Monet", "iterations": 12, "xt_source": "sample"}))
    with pytest.raises(SystemExit) as e:
        esd.parse_args(["--config", str(cfg), "--print-config", "--output", str(tmp_path)])
    assert e.value.code == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["erase_concept"], shown["iterations"], shown["xt_source"]) == ("Claude Monet", 12, "sample")
    assert shown["recipe"] == "recommended", "the recipe fills what the config leaves"
    assert shown["target"] == "twin"
    cfg.write_text(json.dumps({"erase_concept": "Claude Monet", "not_a_flag": 1}))    # refused as a flag would be
    with pytest.raises(SystemExit) as e:
        esd.parse_args(["--config", str(cfg), "--output", str(tmp_path)])
    assert_error_line(str(e.value.code), "unknown setting 'not_a_flag'")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(SystemExit) as e:
        esd.parse_args(["--config", str(bad), "--output", str(tmp_path)])
    assert_error_line(str(e.value.code), "--config")


@pytest.mark.parametrize("module, argv, config", [(esd, ["--erase_concept", "x"], EsdConfig),
                                                  (grid_erasure, ["--concept", "x"], GridConfig)])
def test_a_trainers_typed_config_has_exactly_its_parsers_settings(module, argv, config):
    flags = vars(training_flags.parse(module.build_parser(), argv))     # the parser's own settings
    cfg = config.of(flags)
    assert cfg.settings() == flags
    with pytest.raises(TypeError, match="not fields"):
        config.of({**flags, "surplus": 1})
    with pytest.raises(TypeError, match="are not set"):
        config.of({k: v for k, v in flags.items() if k != "seed"})
    assert isinstance(module.parse_args(argv), config), "the command line parses into the typed config"
    resolved = cfg.resolved("esd" if module is esd else "grid", "toy")
    assert cfg.lr is None, "a config is never changed in place"
    assert resolved.lr == pytest.approx(7e-4), "the toy family's lr"
