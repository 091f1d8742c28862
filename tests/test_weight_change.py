import csv
import json
import os

import pytest
import torch
from PIL import Image

from conftest import REPO, load_script

from spatial_erasure.architectures import SD14_UNET_CONFIG, build_unet
from spatial_erasure.erasure_file import read_erasure, save_erasure
from spatial_erasure.evaluation.weight_change import (analyse, block_of, expected_tensors, group, projection_of,
                                                      tensor_changes)
from spatial_erasure.models import TOY_MODEL
from spatial_erasure.selection import select_parameters

SCRIPT = "evaluation/weight_change_analysis.py"
ESD = os.path.join(REPO, "models", "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")
GRID = os.path.join(REPO, "models", "grid-Vincent_van_Gogh-scaled-esd-x.safetensors")


@pytest.fixture(scope="module")
def cache():
    """Base UNets shared by the analyse() calls of this module (loading + fingerprinting is the slow part)."""
    return {}


@pytest.fixture(scope="module")
def toy_unet(cache):
    analyse(ESD, cache=cache)
    return toy_entry(cache)["unet"]


def toy_entry(cache):
    """The toy base's cache entry, found by the fingerprint the ESD file records (its key is a path)."""
    want = read_erasure(ESD)[1]["base_fingerprint"]
    return next(e for e in cache.values() if e["fingerprint"] == want)


def write_file(path, cache, tensors, **meta):
    entry = toy_entry(cache)           # other tests may cache other bases (the 9-channel toy model)
    save_erasure(str(path), tensors, {"base_model": TOY_MODEL, "base_fingerprint": entry["fingerprint"],
                                      "method": "esd-x", "concept": "test", **meta})
    return str(path)


def test_names_parse_into_blocks_and_projections():
    assert block_of("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight") == "down.1"
    assert block_of("mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.bias") == "mid"
    assert block_of("up_blocks.2.resnets.1.conv1.weight") == "up.2"
    assert block_of("conv_in.weight") == block_of("time_embedding.linear_1.weight") == "other"
    assert projection_of("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0.bias") == "to_out"
    assert projection_of("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight") == "to_q"
    assert projection_of("down_blocks.0.resnets.0.conv1.weight") == "other"
    assert projection_of("down_blocks.0.attentions.0.proj_in.weight") == "other"


def test_identical_tensors_have_exactly_zero_change(toy_unet, cache, tmp_path):
    same = select_parameters(toy_unet, "esd-x")
    path = write_file(tmp_path / "same.safetensors", cache, same)
    r = analyse(path, cache=cache)
    assert r["fingerprint_checked"]
    assert len(r["rows"]) == 35
    assert all(row["dW_norm"] == 0.0 and row["dW_max"] == 0.0 and row["W_norm"] > 0 for row in r["rows"])
    assert r["totals"]["dW_norm"] == 0.0
    assert r["totals"]["tensors_changed"] == 0
    assert r["expected"] == {"tensors": 35, "parameters": r["totals"]["parameters"], "file_matches_selection": True}


def test_one_changed_tensor_reports_the_delta_norm(toy_unet, cache, tmp_path):
    params = {k: v.detach().clone() for k, v in select_parameters(toy_unet, "esd-x").items()}
    name = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    delta = torch.zeros_like(params[name])
    delta[0, 0], delta[1, 1] = 0.3, 0.4        # ||delta|| = 0.5
    params[name] += delta
    path = write_file(tmp_path / "one.safetensors", cache, params)
    r = analyse(path, cache=cache)
    changed = [row for row in r["rows"] if row["dW_norm"] > 0]
    assert [row["name"] for row in changed] == [name]
    row = changed[0]
    assert row["dW_norm"] == pytest.approx(0.5, rel=1e-6)
    assert row["dW_max"] == pytest.approx(0.4, rel=1e-5)
    assert row["W_norm"] == pytest.approx(float(toy_unet.state_dict()[name].double().norm()))
    assert row["rel_change"] == pytest.approx(0.5 / row["W_norm"], rel=1e-6)
    assert (row["block"], row["projection"], row["attention"]) == ("down.1", "to_k", "attn2")
    by_block = {g["block"]: g for g in r["by_block"]}
    assert by_block["down.1"]["dW_norm"] == pytest.approx(0.5, rel=1e-6)
    assert all(g["dW_norm"] == 0 for b, g in by_block.items() if b != "down.1")
    assert [g["projection"] for g in r["by_projection"]] == ["to_q", "to_k", "to_v", "to_out"]
    assert r["totals"]["tensors_changed"] == 1
    assert r["totals"]["parameters_changed"] == params[name].numel()


def test_group_norm_is_the_norm_of_all_changes_together():
    rows = [{"block": "up.1", "parameters": 4, "dW_norm": 3.0, "W_norm": 10.0, "rel_change": 0.3},
            {"block": "up.1", "parameters": 6, "dW_norm": 4.0, "W_norm": 0.0, "rel_change": None},
            {"block": "down.0", "parameters": 1, "dW_norm": 1.0, "W_norm": 2.0, "rel_change": 0.5}]
    g = group(rows, "block")
    assert [x["block"] for x in g] == ["down.0", "up.1"]
    assert g[1]["tensors"] == 2
    assert g[1]["parameters"] == 10
    assert g[1]["dW_norm"] == 5.0
    assert g[1]["rel_change"] == 0.5
    assert g[1]["mean_rel_change"] == 0.3


def test_esd_u_groups_non_attention_tensors_as_other(toy_unet):
    state = toy_unet.state_dict()
    rows = tensor_changes(state, {k: state[k].clone() for k in select_parameters(toy_unet, "esd-u")})
    assert not any(r["attention"] == "attn2" for r in rows)
    assert [g["projection"] for g in group(rows, "projection")] == ["to_q", "to_k", "to_v", "to_out", "other"]
    assert {r["block"] for r in rows if r["name"].startswith("conv_in.")} == {"other"}
    assert [g["block"] for g in group(rows, "block")][-1] == "other"
    assert all(r["dW_norm"] == 0 for r in rows)


def test_esd_x_on_sd14_is_80_tensors_and_44m_parameters():
    n_tensors, n_params = expected_tensors(build_unet("sd14"), "esd-x")
    # per attn2 block of width d: to_q d*d, to_k and to_v d*768, to_out.0 d*d + d; 16 blocks
    widths = [320] * 5 + [640] * 5 + [1280] * 6     # down 2+2+2, mid 1, up 3+3+3 (deepest first)
    ctx = SD14_UNET_CONFIG["cross_attention_dim"]
    assert n_tensors == 80
    assert n_params == sum(2 * d * d + 2 * d * ctx + d for d in widths) == 43_962_560


def test_tensor_for_another_architecture_is_refused(toy_unet):
    with pytest.raises(ValueError, match="does not fit"):
        tensor_changes(toy_unet.state_dict(), {"down_blocks.0.attentions.0.proj_in.weight": torch.zeros(3, 3)})


def test_script_writes_csv_markdown_json_png(tmp_path):
    script = load_script(SCRIPT)
    out = tmp_path / "out"
    assert script.main(script.parse_args([ESD, GRID, "--output", str(out)])) == 0
    for stem in ("esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x", "grid-Vincent_van_Gogh-scaled-esd-x"):
        with open(out / f"{stem}.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 35
        assert all(float(r["dW_norm"]) > 0 for r in rows)
    data = json.loads((out / "weight_change.json").read_text())
    assert [f["totals"]["tensors"] for f in data["files"]] == [35, 35]
    assert data["reference_architecture"] == "sd14"
    assert data["reference"]["esd-x"] == {"tensors": 80, "parameters": 43_962_560}
    first, second = data["comparison"]
    assert first["dW_ratio"] == 1.0
    esd, grid = (f["totals"] for f in data["files"])
    assert second["dW_ratio"] == pytest.approx(grid["dW_norm"] / esd["dW_norm"])
    assert second["dW_ratio"] != 1
    md = (out / "report.md").read_text()
    assert "### By block" in md
    assert "| up.1 |" in md
    assert "| to_out |" in md
    assert f"{second['dW_ratio']:.2f}x" in md
    assert "80 tensors = 43,962,560 parameters" in md
    w, h = Image.open(out / "relative_change_by_block.png").size
    assert w > 200
    assert h > 100


def test_bad_input_is_one_line_error_and_writes_nothing(toy_unet, cache, tmp_path):
    script = load_script(SCRIPT)
    out = tmp_path / "out"
    not_erasure = os.path.join(TOY_MODEL, "unet", "diffusion_pytorch_model.safetensors")
    lost_base = write_file(tmp_path / "lost.safetensors", cache, select_parameters(toy_unet, "esd-x"),
                           base_model=str(tmp_path / "no-such-model"))
    other_base = str(tmp_path / "other.safetensors")
    save_erasure(other_base, select_parameters(toy_unet, "esd-x"), {"base_model": TOY_MODEL, "method": "esd-x",
                                                                    "base_fingerprint": "0123456789abcdef"})
    # SystemExit with a message: Python prints it to stderr and exits with status 1
    # ([ESD, other_base]: the good first file must not be written either)
    cases = [([str(tmp_path / "missing.safetensors")], "does not exist"), ([not_erasure], "not an erasure file"),
             ([lost_base], "--base_model"), ([ESD, other_base], "(UNet fingerprint 0123456789abcdef)"),
             ([other_base], "(or --no_check_base)")]
    for argv, says in cases:
        with pytest.raises(SystemExit) as e:
            script.main(script.parse_args(argv + ["--output", str(out)]))
        assert isinstance(e.value.code, str)
        assert says in e.value.code
        assert "\n" not in e.value.code
        assert not out.exists()
