import pytest
import torch

from spatial_erasure.masks import grid_masks, to_latent
from spatial_erasure.models import load_pipeline
from spatial_erasure.objectives import teacher_eps
from spatial_erasure import trajectories
from spatial_erasure.prompts import encode
from spatial_erasure.trajectories import Inpainting, Stream, denoise, make_source


def inpainting(kind, cases):
    """Inpainting inputs for `cases` rows on the tiny fixture (16x16 latents): None, 4-channel blend or 9-channel."""
    if kind is None:
        return None
    g = torch.Generator().manual_seed(7)
    z0 = torch.randn(cases, 4, 16, 16, generator=g)
    mask = to_latent(grid_masks(32)[[0, 4, 9]][:cases], 16)
    return Inpainting(z0, mask, torch.randn(cases, 4, 16, 16, generator=g) if kind == "nine" else None)


@pytest.mark.parametrize("kind,inpaint", [("sd", None), ("sd", "blend"), ("sd-inpaint", "nine"), ("sdxl", None)])
def test_stream_visits_the_states_sample_visits(tiny_folders, kind, inpaint, monkeypatch):
    """Driven like a trainer (the teacher's batched call, rows at different steps, other prompts in the
    batch), every state the stream hands out is the state `denoise` (the sample source) reaches from
    that trajectory's noise and case; SDXL's Euler scheduler scales each row by its own sigma. The
    warm-up runs one trajectory a call here, so its chunking is exercised too."""
    monkeypatch.setattr(trajectories, "WARMUP_CHUNK", 1)
    pipe = load_pipeline(tiny_folders[kind], task="inpaint" if inpaint else "text2img")
    unet, sched = pipe.unet, pipe.scheduler
    cond, null, other = encode(pipe, ["a house", "a boat", "a tree"]), encode(pipe, [""]), encode(pipe, ["a cat"])
    inp = inpainting(inpaint, 3)
    n = 5
    stream = Stream(unet, sched, cond, null, 3.0, n, (4, 16, 16), width=3, seed=0, inpaint=inp)
    assert stream.k.tolist() == [0, 1, 3]
    assert stream.warmup_forwards == 2 * (1 + 3 - 1 + 1)   # staggered start
    checked = 0
    for _ in range(12):
        x, t, cases = stream.draw(None, 2)
        rows = stream.rows.clone()
        k, noise = stream.k[rows].clone(), stream.noise[rows].clone()
        assert torch.equal(t, sched.timesteps[k])
        extra = None if inpaint != "nine" else inp[cases].extra()
        eps_c, eps_u, _ = teacher_eps(unet, sched, x, t, [cond[cases], null, other], None, extra)
        stream.advance(eps_c, eps_u)
        for j in range(2):
            ref = denoise(unet, sched, noise[j:j + 1], cond[cases[j:j + 1]], null, 3.0, n, int(k[j]),
                          inpaint=None if inp is None else inp[cases[j:j + 1]])
            assert torch.allclose(x[j], ref[0], atol=1e-4), (j, int(k[j]))
            checked += 1
    assert checked == 24
    assert stream.restarts >= 3
    assert sum(stream.k_histogram) == 24
    assert min(stream.k_histogram) >= 3   # every step visited, near uniform
    assert sorted(set(stream.case.tolist()) | set(range(3))) == [0, 1, 2]


def test_stream_refuses_a_batch_wider_than_it_and_a_step(tiny_folders):
    pipe = load_pipeline(tiny_folders["sd"])
    c, null = encode(pipe, ["a house"]), encode(pipe, [""])
    stream = make_source("stream", pipe.unet, pipe.scheduler, c, null, 3.0, 4, (4, 16, 16), width=2)
    assert stream.streams
    assert stream.pick_step(None) is None
    with pytest.raises(ValueError, match="exceeds the stream width 2"):
        stream.draw(None, 3)
    with pytest.raises(ValueError, match="picks its own steps"):
        stream.draw(1, 1)
    cost = stream.cost()
    assert cost["xt_source"] == "stream"
    assert cost["bank_forwards"] == 0
    assert cost["warmup_forwards"] == 2 * 2
