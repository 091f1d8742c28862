"""Exported erasures load in stock diffusers and reproduce the erased weights.

Every export is loaded back with diffusers' own loaders only (from_pretrained, load_lora_weights) and
compared with W0 + dW (full rank) or W0 + the rank-r SVD reconstruction computed here, independently.
"""
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import run
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors import safe_open
from safetensors.torch import load_file

from spatial_erasure.export import apply_lora_equivalent, effective_weights, export, main, one_thread, parse_args
from spatial_erasure.models import MODELS_DIR, REPO_ROOT, TOY_MODEL, fingerprint
from spatial_erasure.erasure_file import apply_erasure, read_erasure, save_erasure
from spatial_erasure.errors import InputError

# expected: a LoRA with biases puts a lora_B bias on to_q/k/v too, which have no bias to fuse into
pytestmark = pytest.mark.filterwarnings("ignore:`lora_bias=True` was passed")

ESD = str(REPO_ROOT / "models" / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")
FULL = 10_000    # >= min(shape) of every tensor: capped, so the LoRA is exact


def stock(model=TOY_MODEL):
    """A fresh stock diffusers pipeline (LoRA loading changes it in place)."""
    return StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)


def svd_target(w_erased, w0, r):
    """W0 + the best rank-r approximation of dW, computed independently of the exporter."""
    d = (w_erased - w0).double().flatten(1)
    u, s, vh = torch.linalg.svd(d, full_matrices=False)
    return (w0.double() + ((u[:, :r] * s[:r]) @ vh[:r]).reshape(w0.shape)).float()


def rel(a, b):
    """||a - b|| / ||b||."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def unet_out(pipe):
    """UNet prediction at one fixed (x, t, cond)."""
    g = torch.Generator().manual_seed(0)
    c = pipe.unet.config
    x = torch.randn(1, c.in_channels, c.sample_size, c.sample_size, generator=g)
    cond = torch.randn(1, 8, c.cross_attention_dim, generator=g)
    return pipe.unet(x, torch.tensor([500]), encoder_hidden_states=cond).sample


@pytest.fixture(autouse=True)
def single_threaded():
    """The reference SVDs here are small: threaded LAPACK only slows them down (see export.one_thread)."""
    with one_thread():
        yield


@pytest.fixture(scope="module")
def esd():
    tensors, _ = read_erasure(ESD)
    base = dict(stock().unet.named_parameters())
    return tensors, {k: base[k].detach().clone() for k in tensors}


def test_diffusers_full_rank_with_biases_equals_dense_erasure(esd, tmp_path):
    tensors, w0 = esd
    report = export(ESD, "diffusers", str(tmp_path / "lora"), rank=FULL, bias="carry")
    with safe_open(report["output"], "pt") as f:
        keys = list(f.keys())
    assert report["output"].endswith("lora/pytorch_lora_weights.safetensors")
    assert all(k.startswith("unet.") and k.endswith((".lora_A.weight", ".lora_B.weight", ".lora_B.bias")) for k in keys)
    assert report["max_rel_error"] < 1e-6
    assert not report["fusable"]
    assert len(report["biases"]) == 7
    assert all(b["carried"] for b in report["biases"])

    pipe = stock()
    pipe.load_lora_weights(str(tmp_path / "lora"))      # the folder, as users pass it
    eff = effective_weights(pipe.unet)
    assert set(eff) >= set(tensors)
    for k, v in tensors.items():
        assert rel(eff[k], v) < 1e-5, k
    # end to end: the LoRA-loaded UNet predicts what the densely erased one does
    dense = stock()
    apply_erasure(dense, ESD)
    out_lora, out_dense = unet_out(pipe), unet_out(dense)
    assert rel(out_lora, out_dense) < 1e-5
    assert rel(out_dense, unet_out(stock())) > 1e-3      # and the erasure does change the prediction


def test_diffusers_default_drops_biases_and_fuses(esd, tmp_path):
    tensors, w0 = esd
    report = export(ESD, "diffusers", str(tmp_path / "l.safetensors"), rank=2)   # the default: biases dropped
    assert os.path.exists(tmp_path / "l.export.json")
    assert report["fusable"]
    assert report["ranks"] == [2]
    assert report["bias"].startswith("dropped")
    assert not any(b["carried"] for b in report["biases"])
    for b in report["biases"]:
        assert b["rel_norm"] == pytest.approx(rel(tensors[b["name"]], w0[b["name"]]), rel=1e-4)

    pipe = stock()
    pipe.load_lora_weights(report["output"])
    eff = effective_weights(pipe.unet)
    for k, v in tensors.items():
        want = svd_target(v, w0[k], 2) if k.endswith(".weight") else w0[k]   # biases stay at base
        assert rel(eff.get(k, w0[k]), want) < 1e-5, k
    for row in report["tensors"]:      # the reported error is ||dW - dW_r|| / ||dW||
        k = row["name"]
        assert row["rel_error"] == pytest.approx(float((svd_target(tensors[k], w0[k], 2) - tensors[k]).norm()
                                                       / (tensors[k] - w0[k]).norm()), rel=1e-3)
    # what the measurement helper builds is what the loader computes, and diffusers can fuse it
    ref = stock()
    apply_lora_equivalent(ref, ESD, rank=2, with_bias=False)
    before = unet_out(pipe)
    pipe.fuse_lora()
    assert rel(unet_out(pipe), before) < 1e-5
    assert rel(before, unet_out(ref)) < 1e-5


@pytest.mark.parametrize("rank, energy", [(FULL, None), (None, 0.9)])
def test_kohya_loads_in_diffusers(esd, tmp_path, rank, energy):
    tensors, w0 = esd
    report = export(ESD, "kohya", str(tmp_path / "k"), rank=rank, energy=energy)
    state = load_file(report["output"])
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha"))
               for k in state)
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_out_0.alpha" in state
    # one alpha (the most common rank) for all modules: diffusers ignores per-module kohya alphas
    alphas = {v.item() for k, v in state.items() if k.endswith(".alpha")}
    assert alphas == {report["alpha"]}
    assert report["alpha"] in report["ranks"]
    assert report["bias"].startswith("dropped")
    ranks = {r["name"]: r["rank"] for r in report["tensors"]}
    if energy:    # the smallest rank keeping 90% of sum(s^2); ranks differ, and still load right
        assert len(set(ranks.values())) > 1
        for k, r in ranks.items():
            s2 = torch.linalg.svdvals((tensors[k] - w0[k]).double()) ** 2
            assert s2[:r].sum() >= 0.9 * s2.sum() > s2[:r - 1].sum()

    pipe = stock()
    pipe.load_lora_weights(report["output"])       # diffusers' kohya conversion
    eff = effective_weights(pipe.unet)
    for k, v in tensors.items():
        want = svd_target(v, w0[k], ranks[k]) if k.endswith(".weight") else w0[k]
        assert rel(eff.get(k, w0[k]), want) < 1e-5, k
        if rank == FULL and k.endswith(".weight"):
            assert rel(eff[k], v) < 1e-5


def test_pipeline_folder_and_single_file_unet(esd, tmp_path):
    tensors, w0 = esd
    out = str(tmp_path / "erased")
    export(ESD, "pipeline", out)
    assert not os.path.exists(out + ".tmp")
    assert json.load(open(os.path.join(out, "export.json")))["exact"]
    base = dict(stock().unet.named_parameters())
    loaded = dict(stock(out).unet.named_parameters())
    for k, p in loaded.items():
        assert torch.equal(p, tensors[k] if k in tensors else base[k]), k
    single = os.path.join(out, "unet", "diffusion_pytorch_model.safetensors")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(TOY_MODEL, subfolder="unet"))
    unet.load_state_dict(load_file(single), strict=True)
    for k, v in tensors.items():
        assert torch.equal(dict(unet.named_parameters())[k], v)
    with pytest.raises(InputError, match="--overwrite"):    # a finished export is replaced only when asked
        export(ESD, "pipeline", out)
    os.remove(os.path.join(out, "model_index.json"))
    export(ESD, "pipeline", out, overwrite=True)    # replaces the earlier export whole
    assert os.path.isfile(os.path.join(out, "model_index.json"))
    assert sorted(os.listdir(tmp_path)) == ["erased"], "no temporary, no lock, no folder moved aside"


def test_conv_and_unslotted_tensors_on_tiny_model(tiny_folders, tmp_path):
    folder = tiny_folders["sd"]
    unet = stock(folder).unet
    own = dict(unet.named_parameters())
    torch.manual_seed(1)
    names = ["conv_in.weight", "conv_in.bias", "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
             "down_blocks.0.resnets.0.norm1.weight"]
    changed = {k: own[k].detach() + 0.1 * torch.randn_like(own[k]) for k in names}
    path = str(tmp_path / "tiny.safetensors")
    save_erasure(path, changed, {"base_model": folder, "base_fingerprint": fingerprint(unet), "method": "test"})
    for fmt in ("diffusers", "kohya"):
        report = export(path, fmt, str(tmp_path / f"{fmt}.safetensors"), rank=FULL,
                        bias="carry" if fmt == "diffusers" else "drop")   # kohya's .diff_b: not for diffusers
        assert [d["name"] for d in report["dropped"]] == ["down_blocks.0.resnets.0.norm1.weight"]
        pipe = stock(folder)
        pipe.load_lora_weights(report["output"])
        eff = effective_weights(pipe.unet)
        for k in names[:3]:
            want = changed[k] if fmt == "diffusers" or k.endswith(".weight") else own[k]
            assert rel(eff[k], want) < 1e-5, (fmt, k)


def test_default_diffusers_exports_load_and_fuse_on_inpainting_and_sdxl(tiny_folders, tmp_path):
    """The default diffusers export (biases dropped) loads and `pipe.fuse_lora()` fuses it, on the
    bundled 9-channel grid file and on a tiny SDXL; at full rank the fused weights are the file's."""
    from diffusers import DiffusionPipeline
    from spatial_erasure.models import TOY_INPAINTING
    xl = tiny_folders["sdxl"]
    unet = DiffusionPipeline.from_pretrained(xl).unet
    own = dict(unet.named_parameters())
    torch.manual_seed(2)
    names = [n for n in own if ".attn2." in n][:6]
    assert any(n.endswith(".bias") for n in names)
    assert any(n.endswith(".weight") for n in names)
    changed = {k: own[k].detach() + 0.05 * torch.randn_like(own[k]) for k in names}
    xl_file = str(tmp_path / "xl.safetensors")
    save_erasure(xl_file, changed, {"base_model": xl, "base_fingerprint": fingerprint(unet), "method": "test"})
    grid = str(MODELS_DIR / "grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors")
    for path, folder in ((grid, TOY_INPAINTING), (xl_file, xl)):
        tensors = read_erasure(path)[0]
        report = export(path, "diffusers", str(tmp_path / f"{os.path.basename(path)}-lora"), rank=FULL)
        assert report["fusable"], report["bias"]
        pipe = DiffusionPipeline.from_pretrained(folder)
        base = {k: p.detach().clone() for k, p in pipe.unet.named_parameters()}
        pipe.load_lora_weights(report["output"])
        pipe.fuse_lora()
        pipe.unload_lora_weights()                              # the fused weights stay, the LoRA layers go
        fused = dict(pipe.unet.named_parameters())
        for k, v in tensors.items():
            want = v if k.endswith(".weight") else base[k]       # biases are left at base by default
            assert rel(fused[k], want) < 1e-5, (path, k)


def test_bad_inputs(tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    with open(fake, "wb") as f:
        pickle.dump({"a": [1, 2, 3] * 100}, f)
    # as a user runs it: one line on stderr, exit code 1, no traceback
    r = subprocess.run([sys.executable, "-m", "spatial_erasure.export", str(fake), "--format", "kohya",
                          "--rank", "4", "--output", str(tmp_path / "out")], capture_output=True, text=True)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1
    assert len(errors) == 1
    assert "Traceback" not in r.stderr
    assert "is not a safetensors file" in errors[0]
    assert not os.path.exists(tmp_path / "out")
    for argv in (["--rank", "0"], ["--energy", "1.5"], []):
        with pytest.raises(SystemExit) as e:
            main(parse_args([ESD, "--format", "diffusers", "--output", str(tmp_path / "x"), *argv]))
        err = str(e.value.code)                    # SystemExit("error: ...") prints it and exits 1
        assert err.startswith("error:")
        assert "\n" not in err
    assert not os.path.exists(tmp_path / "x")
    (tmp_path / "notes").mkdir()      # a pipeline export never deletes a folder it did not write
    with pytest.raises(SystemExit) as e:
        main(parse_args([ESD, "--format", "pipeline", "--output", str(tmp_path / "notes")]))
    assert "must be a new folder" in str(e.value.code)


def test_export_rates_compares_loaded_loras_with_the_dense_file(tmp_path):
    """evaluation/export_rates.py end to end on the bundled ESD-x file (1 image per style, 2 steps): the
    LoRA is loaded by plain diffusers; rank 128 (full for the toy's to_k/to_v) reproduces the dense rates."""
    r = run(["evaluation/export_rates.py", "--erasure", ESD, "--ranks", "1", "128", "--formats", "diffusers",
                    "--per_style", "1", "--num_inference_steps", "2", "--output", str(tmp_path)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "export_rates.json").read_text())
    rows = {(row["model"], row["rank"]): row for row in report["rows"]}
    dense, full = rows[("dense file", None)], rows[("diffusers LoRA", 128)]
    assert full["mean_rel_error"] < 1e-6, "rank 128 covers every toy attn2 weight exactly"
    assert (full["target_rate"], full["lowest_other"]) == (dense["target_rate"], dense["lowest_other"])
    assert report["lowest_rank_within_tolerance"]["diffusers"] in (1, 128)
    assert "| diffusers LoRA | 1 |" in (tmp_path / "export_rates.md").read_text()


def test_ldm_names_of_sdxl_modules():
    from spatial_erasure.families.ldm_names import ldm_name
    xl = {"layers_per_block": 2, "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}
    cases = {"down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k":
             "input_blocks.4.1.transformer_blocks.0.attn2.to_k",
             "down_blocks.0.resnets.1.conv1": "input_blocks.2.0.in_layers.2",
             "down_blocks.0.downsamplers.0.conv": "input_blocks.3.0.op",
             "down_blocks.1.resnets.0.conv_shortcut": "input_blocks.4.0.skip_connection",
             "mid_block.resnets.1.conv2": "middle_block.2.out_layers.3",
             "mid_block.attentions.0.proj_in": "middle_block.1.proj_in",
             "up_blocks.0.upsamplers.0.conv": "output_blocks.2.2.conv",
             "up_blocks.1.resnets.2.time_emb_proj": "output_blocks.5.0.emb_layers.1",
             "up_blocks.1.attentions.1.proj_out": "output_blocks.4.1.proj_out",
             "add_embedding.linear_2": "label_emb.0.2", "time_embedding.linear_1": "time_embed.0",
             "conv_in": "input_blocks.0.0", "conv_out": "out.2"}
    for diffusers_name, want in cases.items():
        assert ldm_name(diffusers_name, xl) == want, diffusers_name
    with pytest.raises(ValueError):
        ldm_name("encoder.layers.0", xl)


def test_kohya_sdxl_export_in_ldm_names_loads_every_module_and_carries_biases_as_diff_b(tiny_folders, tmp_path):
    """Every UNet tensor of a tiny SDXL changed (as esd-all does): the kohya export names its modules
    in the LDM layout, plain diffusers maps every one back (no module left at its base weight), the
    metadata names the base model, and --bias carry writes each bias delta as .diff_b."""
    from diffusers import DiffusionPipeline
    from spatial_erasure.selection import select_parameters
    xl = tiny_folders["sdxl"]
    unet = DiffusionPipeline.from_pretrained(xl).unet
    torch.manual_seed(3)
    changed = {k: p.detach() + 0.05 * torch.randn_like(p) for k, p in select_parameters(unet, "esd-all").items()}
    base = {k: p.detach().clone() for k, p in unet.named_parameters()}
    path = str(tmp_path / "xl-all.safetensors")
    save_erasure(path, changed, {"base_model": xl, "base_fingerprint": fingerprint(unet), "method": "esd-all"})
    report = export(path, "kohya", str(tmp_path / "k.safetensors"), rank=FULL)
    with safe_open(report["output"], "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert not [k for k in keys if "down_blocks" in k or "up_blocks" in k or "mid_block" in k]
    assert any("label_emb_0_0" in k for k in keys)
    assert any("input_blocks_" in k for k in keys)
    assert not [k for k in keys if k.endswith(".diff_b")], "dropped by default"
    pipe = DiffusionPipeline.from_pretrained(xl)
    pipe.load_lora_weights(report["output"])
    eff = effective_weights(pipe.unet)
    exported = [r["name"] for r in report["tensors"]]
    assert len(exported) > 20
    for k in exported:
        assert k in eff, k
        assert rel(eff[k], changed[k]) < 1e-5, k
    carried = export(path, "kohya", str(tmp_path / "kb.safetensors"), rank=FULL, bias="carry")
    state = load_file(carried["output"])
    diff_b = {k: v for k, v in state.items() if k.endswith(".diff_b")}
    assert len(carried["biases"]) > 0
    for b in carried["biases"]:
        module = b["name"].removesuffix(".bias")
        want = changed[b["name"]] - base[b["name"]]
        assert any(v.shape == want.shape and torch.allclose(v, want, atol=1e-6) for v in diff_b.values()), module
    # the norms (no LoRA slot): dropped by default, carried whole as .diff / .diff_b with --bias carry
    assert report["dropped"] and not any(r["carried"] for r in report["dropped"])
    assert all(r["carried"] for r in carried["dropped"])
    whole = {k: v for k, v in state.items() if k.endswith(".diff")}
    norms = [r["name"] for r in carried["dropped"] if r["name"].endswith(".weight")]
    assert len(whole) == len(norms) > 0
    for name in norms:
        want = changed[name] - base[name]
        assert any(v.shape == want.shape and torch.allclose(v, want, atol=1e-6) for v in whole.values()), name
    assert len(diff_b) == len(carried["biases"]) + len(carried["dropped"]) - len(norms)
    with pytest.raises(Exception):                 # what the report says: diffusers does not load this file
        DiffusionPipeline.from_pretrained(xl).load_lora_weights(carried["output"])
