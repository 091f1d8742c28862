import json

import torch
from conftest import run

from spatial_erasure.models import load_pipeline
from spatial_erasure.selection import select_parameters
from spatial_erasure.trainer import forward_equivalents, prepare


def test_bf16_keeps_trained_tensors_at_their_stored_fp32_values(tiny_folders):
    stored = {n: p.detach().clone() for n, p in select_parameters(load_pipeline(tiny_folders["sd"]).unet,
                                                                   "esd-x").items()}
    st = prepare(tiny_folders["sd"], "esd-x", "cpu", "bf16")
    assert st.pipe.unet.conv_in.weight.dtype == torch.bfloat16                  # frozen weights: compute dtype
    assert all(p.dtype == torch.float32 and p.requires_grad and torch.equal(p, stored[n]) for n, p in st.params.items())
    # the teacher's originals in the compute dtype: what autocast would round them to anyway
    assert st.teacher_unet is st.pipe.unet
    assert all(v.dtype == torch.bfloat16 and torch.equal(v, stored[n].bfloat16()) for n, v in st.teacher_params.items())
    assert st.load_peak_mb > 0


def test_copy_teacher_is_a_second_frozen_unet(tiny_folders):
    st = prepare(tiny_folders["sd"], "esd-x", "cpu", teacher="copy")
    assert st.teacher_unet is not st.pipe.unet
    assert st.teacher_params is None
    own, copy = dict(st.pipe.unet.named_parameters()), dict(st.teacher_unet.named_parameters())
    assert own.keys() == copy.keys()
    assert all(torch.equal(own[k], copy[k]) for k in own)
    assert not any(p.requires_grad for p in copy.values())
    assert own[next(iter(st.params))].data_ptr() != copy[next(iter(st.params))].data_ptr()


def test_forward_equivalents_count_a_backward_as_two():
    # ESD, batch 1: teacher eps(c), eps("") + student forward + backward (2) = 5, plus sampling spread over the run
    fe = forward_equivalents(sampling_forwards=100, iterations=200, teacher_rows=2, student_rows=1)
    assert fe["forward_equivalents_per_iteration"] == 5.5
    assert fe["forwards_per_iteration"] == 3.5
    grid = forward_equivalents(0, 500, teacher_rows=5 * 2, student_rows=2 * 2, rows=2, checkpointing=True)
    assert grid["forward_equivalents_per_row"] == (10 + 4 * 4) / 2


def test_esd_stream_on_sdxl_reports_its_cost(tiny_folders, tmp_path):
    r = run(["original_esd/esd_sdxl.py", "--erase_concept", "Vincent van Gogh", "--base_model", tiny_folders["sdxl"],
             "--recipe", "paper", "--iterations", "6", "--num_inference_steps", "4", "--xt_source", "stream",
             "--stream_width", "2",
             "--batch_size", "2", "--output", str(tmp_path)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    log = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert log["xt_source"] == "stream"
    assert log["stream_width"] == 2
    assert log["bank_forwards"] == 0
    # rows start at steps 0 and 2 of 4: row 0 restarts once, row 1 twice in 6 iterations
    assert sum(log["k_histogram"]) == 12
    assert log["restarts"] == 3
    assert log["warmup_forwards"] == 2 * 2
    # 2 rows: teacher eps(c), eps("") each (4) + student 2 x 3, plus the warm-up spread over 6 iterations
    assert log["forward_equivalents_per_row"] == round((4 + 6 + 4 / 6) / 2, 2)
    assert "denoiser forward-equivalents per row" in r.stdout
