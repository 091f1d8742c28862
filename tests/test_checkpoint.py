import os

import torch

from spatial_erasure.checkpoint import load_state, save_state


def test_state_round_trip_with_optimizer(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    extra = [torch.zeros(2)]
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).square().sum().backward()
        opt.step()
    path = str(tmp_path / "state.safetensors")
    save_state(path, {"net": net, "extra": extra}, opt, step=3, extra={"seconds": 1.5})
    assert os.listdir(tmp_path) == ["state.safetensors"]          # no temporary file left behind

    net2, extra2 = torch.nn.Linear(4, 3), [torch.ones(2)]
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-2)
    step, info = load_state(path, {"net": net2, "extra": extra2}, opt2)
    assert step == 3
    assert info == {"seconds": 1.5}
    assert torch.equal(net.weight, net2.weight)
    assert torch.equal(extra2[0], torch.zeros(2))
    # both optimizers now take the identical next step
    x = torch.randn(5, 4)
    for n, o in ((net, opt), (net2, opt2)):
        o.zero_grad()
        n(x).square().sum().backward()
        o.step()
    assert torch.allclose(net.weight, net2.weight)
