"""GPU paths (skipped without CUDA; bench/gpu_check.sh runs them on a lent GPU machine): bf16 with fp32
trained tensors, gradient checkpointing, channels-last and the stream source on cuda."""
import json

import pytest
import torch
from conftest import run

from spatial_erasure.erasure_file import read_erasure
from spatial_erasure.models import load_pipeline
from spatial_erasure.objectives import teacher_eps
from spatial_erasure.prompts import encode
from spatial_erasure.trajectories import Stream, denoise

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("flags", [["--mixed_precision", "bf16"],
                                   ["--mixed_precision", "fp16", "--gradient_checkpointing", "--channels_last"]])
def test_esd_trains_on_cuda_with_fp32_tensors(tiny_folders, tmp_path, flags):
    r = run(["original_esd/esd_sd.py", "--erase_concept", "Vincent van Gogh", "--base_model", tiny_folders["sd"],
             "--iterations", "4", "--num_inference_steps", "4", "--xt_source", "stream", "--device", "cuda",
             "--output", str(tmp_path), *flags], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    tensors, meta = read_erasure(str(tmp_path / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors"))
    assert all(v.dtype == torch.float32 for v in tensors.values())
    assert meta["iterations_done"] == 4
    log = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert 0 < log["peak_memory_mb"] < 2000
    assert all(v == v for v in log["losses"])


def test_stream_on_cuda_matches_sample(tiny_folders):
    pipe = load_pipeline(tiny_folders["sdxl"], device="cuda")
    cond, null = encode(pipe, ["a house", "a boat"]), encode(pipe, [""])
    stream = Stream(pipe.unet, pipe.scheduler, cond, null, 3.0, 4, (4, 16, 16), width=2, seed=0, device="cuda")
    for _ in range(5):
        x, t, cases = stream.draw(None, 2)
        k, noise = stream.k[stream.rows].clone(), stream.noise[stream.rows].clone()
        eps_c, eps_u = teacher_eps(pipe.unet, pipe.scheduler, x, t, [cond[cases], null], None)
        stream.advance(eps_c, eps_u)
        for j in range(2):
            ref = denoise(pipe.unet, pipe.scheduler, noise[j:j + 1], cond[cases[j:j + 1]], null, 3.0, 4, int(k[j]))
            assert torch.allclose(x[j], ref[0], atol=1e-3)
