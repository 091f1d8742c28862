"""Which tensors each train method selects (selection.TRAIN_METHODS)."""
import pytest

from spatial_erasure.architectures import build_unet
from spatial_erasure.selection import count, select_parameters


def test_train_methods_on_sd14_architecture():
    unet = build_unet("sd14")
    x = select_parameters(unet, "esd-x")
    # 16 attn2 blocks x {to_q, to_k, to_v, to_out.0 weight, to_out.0 bias}
    assert len(x) == 80, len(x)
    assert all(".attn2." in n for n in x), "esd-x: cross-attention only"
    assert sum(n.endswith("to_out.0.bias") for n in x) == 16, "with the 16 output biases"
    n_tensors, n_params = count(x)
    assert 40e6 < n_params < 50e6, n_params     # ~44M parameters: "80" counts tensors, not parameters
    strict = select_parameters(unet, "esd-x-strict")
    assert len(strict) == 32, "esd-x-strict: 32 of esd-x's tensors"
    assert set(strict) < set(x), "esd-x-strict: 32 of esd-x's tensors"
    u, everything = select_parameters(unet, "esd-u"), select_parameters(unet, "esd-all")
    assert not set(u) & set(x), "esd-u and esd-x do not overlap"
    # esd-u + attn2 = the whole UNet (attn2 has only Linear parameters)
    assert set(u) | set(x) == set(everything) == {n for n, _ in unet.named_parameters()}, "together: every tensor"


def test_unknown_method_lists_the_choices():
    with pytest.raises(ValueError) as e:
        select_parameters(build_unet("sd14"), "esd_x")
    from spatial_erasure.families import sd
    assert all(m in str(e.value) for m in sd.TRAIN_METHODS), str(e.value)
