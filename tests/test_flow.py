"""ESD on the flow-matching transformers (SD3, Flux) in the shared loop, on tiny random-weight
pipelines: train -> erasure file -> load with the fingerprint check -> generate -> export; Flux's
diffusers LoRA loads and fuses with FluxPipeline.load_lora_weights, and the fused transformer
equals the dense-erased one within the export's own low-rank error."""
import numpy as np
import pytest
import torch

from conftest import load_script
from spatial_erasure import Erasure, erase
from spatial_erasure.errors import InputError
from spatial_erasure.models import load_pipeline
from spatial_erasure.sampling import generate
from spatial_erasure.testing import save_tiny_pipeline

FAST = dict(iterations=3, num_inference_steps=4, variations=2, preserve=0, resolution=32)


@pytest.fixture(scope="module")
def flow_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    return {kind: save_tiny_pipeline(kind, root / kind) for kind in ("sd3", "flux")}


@pytest.mark.parametrize("kind,method,prefix", [("sd3", "esd-x-strict", "add_"), ("flux", "eraseanything", "add_")])
def test_esd_trains_a_flow_transformer_and_the_file_applies_and_generates(flow_folders, tmp_path, kind, method,
                                                                         prefix):
    folder = flow_folders[kind]
    out = tmp_path / "e.safetensors"
    e = erase("Vincent van Gogh", base_model=folder, output=out, train_method=method, recipe="paper", **FAST)
    assert e.metadata["iterations_done"] == 3 and e.metadata["method"] == method
    assert e.tensors and all(".attn." + prefix in k for k in e.tensors), sorted(e.tensors)
    pipe = load_pipeline(folder)
    base = dict(pipe.transformer.named_parameters())
    assert any(not torch.equal(v, base[k]) for k, v in e.tensors.items()), "training changed the tensors"
    prompt, kw = ["a painting of a house by Vincent van Gogh"], dict(height=32, width=32, max_sequence_length=8)
    before = generate(pipe, prompt, [0], num_inference_steps=2, guidance_scale=1.0, **kw)
    with Erasure.load(out).applied(pipe):
        after = generate(pipe, prompt, [0], num_inference_steps=2, guidance_scale=1.0, **kw)
    assert after.shape == before.shape and np.isfinite(after).all()
    again = generate(pipe, prompt, [0], num_inference_steps=2, guidance_scale=1.0, **kw)
    assert before.shape == (1, 32, 32, 3) and np.array_equal(before, again), "restored after the block"
    other = load_pipeline(flow_folders["flux" if kind == "sd3" else "sd3"])
    with pytest.raises(InputError, match="this Erasure was trained on"):
        Erasure.load(out).apply(other)


def test_the_key_value_penalty_on_sd3_keeps_what_each_projection_receives(flow_folders):
    from spatial_erasure.anchors import KeyValuePenalty, input_moments
    from spatial_erasure.prompts import encode
    from spatial_erasure.selection import select_parameters
    pipe = load_pipeline(flow_folders["sd3"])
    tr = pipe.transformer
    params = select_parameters(tr, "esd-x-strict")
    originals = {n: p.detach().clone() for n, p in params.items()}
    names = sorted({n[:-len(".weight")] for n in params if n.endswith(".weight")})
    cond, null = encode(pipe, ["a dog", "an old red kitchen, a photo", "a robot by Claude Monet"]), encode(pipe, [""])
    moments = input_moments(tr, pipe.scheduler, cond, null, names, (4, 4, 4), 3.0, 2, seed=0)
    assert sorted(moments) == names
    # block 0's text stream by hand: context embedder, then the norm modulated by (t, pooled), at both steps
    pipe.scheduler.set_timesteps(2)
    with torch.no_grad():
        xs = []
        for t in pipe.scheduler.timesteps:
            temb = tr.time_text_embed(t.expand(len(cond)), cond.pooled)
            xs.append(tr.transformer_blocks[0].norm1_context(tr.context_embedder(cond.emb), emb=temb)[0])
        x = torch.cat(xs).reshape(-1, xs[0].shape[-1])
        x = torch.cat([x, torch.ones(len(x), 1)], 1)                  # [x, 1]: the bias's column
    by_hand = x.T @ x / len(x)
    assert torch.allclose(moments["transformer_blocks.0.attn.add_k_proj"], by_hand, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(moments["transformer_blocks.0.attn.add_k_proj"],
                              moments["transformer_blocks.1.attn.add_k_proj"], atol=1e-3), "each block its own"
    penalty = KeyValuePenalty(cond, params, originals, moments)
    weights = sorted(n for n in params if n.endswith(".weight"))
    assert sorted(penalty.names) == weights and float(penalty(params).detach()) == 0.0
    one, b = "transformer_blocks.0.attn.add_k_proj.weight", "transformer_blocks.0.attn.add_k_proj.bias"
    moved = {n: p.detach() + 0.01 * torch.randn_like(p) if n in (one, b) else p.detach() for n, p in params.items()}
    x = x[:, :-1]                                  # the outputs W x + b, moved and original, token by token
    out0 = x @ originals[one].T + originals[b]
    brute = ((x @ moved[one].T + moved[b] - out0) ** 2).sum(1).mean() / (out0 ** 2).sum(1).mean() / len(weights)
    assert torch.allclose(penalty(moved), brute, rtol=1e-4)


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_the_recommended_recipe_runs_on_flow_models_with_their_key_value_penalty(flow_folders, tmp_path, kind):
    from spatial_erasure.esd import parse_args
    argv = ["--erase_concept", "Vincent van Gogh", "--base_model", str(flow_folders[kind]), "--preserve", "4",
            "--output", str(tmp_path)]
    assert parse_args(argv).preserve_kv == 0.0, "on flow models the penalty is on only when asked for"
    e = erase("Vincent van Gogh", base_model=flow_folders[kind], output=tmp_path / "r.safetensors",
              **{**FAST, "preserve": 4, "preserve_kv": 1.0})
    assert e.metadata["args"]["target"] == "twin" and e.metadata["args"]["preserve_kv"] == 1.0
    assert e.metadata["kv_penalty_tensors"] == len([k for k in e.tensors if k.endswith(".weight")]) > 0
    with pytest.raises(InputError, match="--no-twin_map"):
        erase("Vincent van Gogh", base_model=flow_folders["sd3"], output=tmp_path / "t.safetensors", twin_map=True,
              **FAST)


def test_flux_lora_export_loads_and_fuses_in_diffusers(flow_folders, tmp_path):
    from diffusers import FluxPipeline
    folder = flow_folders["flux"]
    e = erase("Vincent van Gogh", base_model=folder, output=tmp_path / "e.safetensors", train_method="esd-x-strict",
              recipe="paper", **FAST)
    report = e.export("diffusers", tmp_path / "lora", rank=2)
    pipe = FluxPipeline.from_pretrained(folder)
    pipe.load_lora_weights(str(tmp_path / "lora"))
    pipe.fuse_lora()
    fused = dict(pipe.transformer.named_parameters())
    fused = {k.replace(".base_layer", ""): v for k, v in fused.items()}
    for row in report["tensors"]:                  # the weights: within the rank's own error
        dense, base = e.tensors[row["name"]], dict(FluxPipeline.from_pretrained(folder).transformer
                                                   .named_parameters())[row["name"]]
        err = float((fused[row["name"]].detach() - dense).norm() / (dense - base.detach()).norm())
        assert err <= row["rel_error"] + 1e-4, (row["name"], err, row["rel_error"])
    assert report["fusable"] and report["max_rel_error"] < 1


def test_each_flow_script_takes_its_own_family_only(flow_folders, tmp_path):
    for script, other in (("original_esd/esd_sd3.py", "flux"), ("original_esd/esd_flux.py", "sd3")):
        module = load_script(script)
        with pytest.raises(SystemExit) as e:
            module.parse_args(["--erase_concept", "x", "--base_model", flow_folders[other], "--output", str(tmp_path)])
        assert "with the same flags" in str(e.value.code)


def test_the_toy_sd3_and_the_sd3_script_take_their_measured_defaults(tmp_path):
    """The toy SD3 keys its own lr and negative guidance (recipes.ESD_FAMILY['toy-sd3']), the toy SD keeps
    'toy'; esd_sd3.py and erase() on an SD3 folder default to esd-x-strict, esd_sd.py to esd-x."""
    from spatial_erasure import esd, recipes
    from spatial_erasure.models import TOY_MODEL
    from spatial_erasure.training_flags import model_family
    assert model_family(load_pipeline("models/toyart-sd3")) == "toy-sd3"
    assert model_family(load_pipeline(TOY_MODEL)) == "toy"
    argv = ["--erase_concept", "Vincent van Gogh", "--base_model", "models/toyart-sd3", "--output", str(tmp_path)]
    cfg = load_script("original_esd/esd_sd3.py").parse_args(argv)
    assert cfg.train_method == "esd-x-strict"
    assert load_script("original_esd/esd_sd.py").parse_args(argv[:2] + ["--output", str(tmp_path)]).train_method \
        == "esd-x"
    assert esd.defaults_for("models/toyart-sd3")["train_method"] == "esd-x-strict"
    assert "train_method" not in esd.defaults_for(TOY_MODEL)
    resolved = cfg.resolved("esd", "toy-sd3")
    family = recipes.ESD_FAMILY["toy-sd3"]
    assert (resolved.lr, resolved.negative_guidance) == (family["lr"], 0.0), "recommended: the twin target, eta 0"
    paper = load_script("original_esd/esd_sd3.py").parse_args(argv + ["--recipe", "paper"]).resolved("esd", "toy-sd3")
    assert (paper.lr, paper.negative_guidance) == (family["lr"], family["negative_guidance"])
    text = load_script("original_esd/esd_sd3.py").parse_args(argv + ["--train_method", "esd-x-text"])
    assert text.train_method == "esd-x-text", "a method SD's table lacks parses (its family's table answers)"
    assert cfg.iterations is None, "a value some family overrides waits for the model"
    assert (resolved.iterations, cfg.resolved("esd", "toy").iterations, cfg.resolved("esd", "sd3").iterations) \
        == (800, 400, 400)


def test_the_gauge_tells_where_a_file_is_used_from_its_metadata():
    """An inpainting (9-channel) grid file is gauged inside masks, any other file globally, whatever the
    denoiser (no UNet config is read: the toy SD3's files have none)."""
    from spatial_erasure.erasure_file import read_erasure
    gauge = load_script("evaluation/gauge.py")
    _, inpaint = read_erasure("models/grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors")
    _, text = read_erasure("models/grid-Vincent_van_Gogh-scaled-esd-x-recommended.safetensors")
    assert gauge.where_used(inpaint)[0] == "masks" and gauge.where_used(text)[0] == "global"
    assert gauge.where_used({"base_model": "models/toyart-sd3", "method": "esd-x-strict"})[0] == "global"


@pytest.mark.parametrize("kind", ["sd3", "flux"])
def test_generate_images_draws_a_flow_model_seed_for_seed(flow_folders, tmp_path, kind):
    from PIL import Image
    script = load_script("original_esd/generate_images.py")
    csv = tmp_path / "p.csv"
    csv.write_text("case_number,prompt,evaluation_seed\n0,a painting of a house by Vincent van Gogh,7\n")
    argv = ["--prompts_path", str(csv), "--base_model", str(flow_folders[kind]), "--num_samples", "2",
            "--num_inference_steps", "2", "--resolution", "32"]
    script.main(script.parse_args([*argv, "--output", str(tmp_path / "a")]))
    script.main(script.parse_args([*argv, "--output", str(tmp_path / "b")]))
    a = [np.asarray(Image.open(tmp_path / "a" / "base" / f"0_{i}.png")) for i in range(2)]
    b = [np.asarray(Image.open(tmp_path / "b" / "base" / f"0_{i}.png")) for i in range(2)]
    assert a[0].shape == (32, 32, 3) and all(np.array_equal(x, y) for x, y in zip(a, b)), "same seed, same image"
    assert not np.array_equal(a[0], a[1]), "each sample its own noise"


def test_weight_change_analysis_groups_a_flow_erasure_by_its_familys_blocks(flow_folders, tmp_path):
    import json
    script = load_script("evaluation/weight_change_analysis.py")
    out = tmp_path / "e.safetensors"
    erase("Vincent van Gogh", base_model=flow_folders["flux"], output=out, train_method="esd-x-strict",
          recipe="paper", **FAST)
    script.main(script.parse_args([str(out), "--output", str(tmp_path / "wc")]))
    data = json.loads((tmp_path / "wc" / "weight_change.json").read_text())
    f = data["files"][0]
    assert f["family"] == "flux" and data["reference_architecture"] == "flux-dev"
    assert data["reference"]["esd-x-strict"]["tensors"] == 19 * 4          # 19 double blocks x add_k/v weight+bias
    assert {g["block"] for g in f["by_block"]} == {"double.0"}, f["by_block"]   # the tiny Flux: one double block
    assert [g["projection"] for g in f["by_projection"]] == ["add_k_proj", "add_v_proj"]
    assert all(g["dW_norm"] > 0 for g in f["by_projection"])
