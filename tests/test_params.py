import pytest
import torch

from spatial_erasure.architectures import build_unet
from spatial_erasure.models import load_pipeline
from spatial_erasure.params import (TRAIN_METHODS, ErasureMismatch, apply_erasure, count, read_erasure,
                                    save_erasure, select_parameters)
from spatial_erasure.testing import save_tiny_pipeline


def test_train_methods_on_sd14_architecture():
    unet = build_unet("sd14")
    x = select_parameters(unet, "esd-x")
    # 16 attn2 blocks x {to_q, to_k, to_v, to_out.0 weight, to_out.0 bias}
    assert len(x) == 80
    assert all(".attn2." in n for n in x) and sum(n.endswith("to_out.0.bias") for n in x) == 16
    n_tensors, n_params = count(x)
    assert 40e6 < n_params < 50e6          # ~44M parameters: "80" counts tensors, not parameters
    strict = select_parameters(unet, "esd-x-strict")
    assert len(strict) == 32 and set(strict) < set(x)
    u, everything = select_parameters(unet, "esd-u"), select_parameters(unet, "esd-all")
    assert not set(u) & set(x)
    # esd-u + attn2 = the whole UNet (attn2 has only Linear parameters)
    assert set(u) | set(x) == set(everything) == {n for n, _ in unet.named_parameters()}


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError) as e:
        select_parameters(build_unet("sd14"), "esd_x")
    assert all(m in str(e.value) for m in TRAIN_METHODS)


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
    assert set(tensors) == set(params) and all(t.dtype == torch.float32 for t in tensors.values())
    assert meta["method"] == "esd-x"

    from spatial_erasure.models import fingerprint
    base = load_pipeline(folder)
    save_erasure(path, params, {"base_model": folder, "base_fingerprint": fingerprint(base.unet)})
    apply_erasure(base, path)
    x, t, c = torch.randn(2, 4, 16, 16), torch.tensor([10, 500]), torch.randn(2, 5, 32)
    with torch.no_grad():
        assert torch.allclose(base.unet(x, t, c).sample, trained.unet(x, t, c).sample, atol=1e-6)


def test_file_for_another_base_model_is_refused(tmp_path):
    from spatial_erasure.models import fingerprint
    a = load_pipeline(save_tiny_pipeline("sd", str(tmp_path / "a"), seed=0))
    b = load_pipeline(save_tiny_pipeline("sd", str(tmp_path / "b"), seed=1))
    path = str(tmp_path / "esd.safetensors")
    save_erasure(path, select_parameters(a.unet, "esd-x"), {"base_model": "a", "base_fingerprint": fingerprint(a.unet)})
    with pytest.raises(ErasureMismatch) as e:
        apply_erasure(b, path)
    assert fingerprint(a.unet) in str(e.value) and fingerprint(b.unet) in str(e.value)
    xl = load_pipeline(save_tiny_pipeline("sdxl", str(tmp_path / "xl")))
    with pytest.raises(ErasureMismatch, match="does not fit"):
        apply_erasure(xl, path, check_base=False)
