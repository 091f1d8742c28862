"""Generation split across 2 CPU processes (spatial_erasure.distributed) gives exactly the images and
numbers of one process, and only the main process writes."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import run

from spatial_erasure.erasure_file import read_erasure
from spatial_erasure.models import MODELS_DIR

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")
# 2 CPU processes (gloo) whatever the machine: `accelerate launch --cpu --num_processes 2` would start one
LAUNCH = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}

# Each process records the files it saves and keeps what every generation call returned to it.
DRIVER = """
import sys
import numpy as np
from PIL import Image
from spatial_erasure.distributed import process_state
from spatial_erasure.evaluation.metrics import cached_generate
from spatial_erasure.models import TOY_MODEL, load_pipeline
from spatial_erasure.sampling import generate, inpaint

out, rank = sys.argv[1], process_state().process_index
save = Image.Image.save
def logged_save(self, fp, *a, **k):
    with open(f"{out}/saves-{rank}.txt", "a") as f:
        f.write(f"{fp}\\n")
    return save(self, fp, *a, **k)
Image.Image.save = logged_save

drawn = []                                 # batch sizes this process drew, in order
def counted(cls):
    call = cls.__call__
    def draw(self, prompt, *a, **k):
        drawn.append(len(prompt))
        return call(self, prompt, *a, **k)
    cls.__call__ = draw

pipe, inpainter = load_pipeline(TOY_MODEL), load_pipeline(TOY_MODEL, task="inpaint")
counted(type(pipe))
counted(type(inpainter))
prompts = [f"a painting of a {s} by Vincent van Gogh" for s in ("house", "boat", "tree", "flower", "cat", "dog")]
kw = dict(num_inference_steps=3, guidance_scale=5.0)
gen = generate(pipe, prompts, range(10, 16), batch_size=2, **kw)          # 3 batches: 2 + 1 per process
masks = np.zeros((6,) + gen.shape[1:3], np.float32)
masks[:, 8:40, 4:36] = 1
raw, pasted = inpaint(inpainter, gen, masks, prompts[::-1], range(20, 26), batch_size=4, **kw)   # 2 batches: 1 + 1
cached = cached_generate(pipe, prompts, list(range(30, 36)), f"{out}/cache", "t", **kw)   # 1 batch: 1 + 0
np.savez(f"{out}/rank{rank}-of-{process_state().num_processes}.npz", gen=gen, raw=raw, pasted=pasted,
         cached=cached, drawn=drawn)
"""


def run2(args, timeout=300):
    """run() with 2 CPU processes' environment: one thread each, no GPU."""
    return run(args, env=ENV, timeout=timeout)


@pytest.mark.slow
def test_generate_inpaint_and_cache_split_over_two_processes_equal_one(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    r = run2([str(driver), str(one)])
    assert r.returncode == 0, r.stderr[-2000:]
    r = run2(LAUNCH + [str(driver), str(two)])
    assert r.returncode == 0, r.stderr[-2000:]
    ref = np.load(one / "rank0-of-1.npz")
    assert ref["gen"].shape == (6, 64, 64, 3)
    assert ref["gen"].dtype == np.uint8
    assert ref["raw"].shape == (6, 64, 64, 3)
    assert list(ref["drawn"]) == [2, 2, 2, 4, 2, 6]
    for rank, drawn in ((0, [2, 2, 4, 6]), (1, [2, 2])):    # contiguous shares of the same batches
        got = np.load(two / f"rank{rank}-of-2.npz")
        assert list(got["drawn"]) == drawn
        # every process got every image, in order, bit-identical to one process
        for k in ("gen", "raw", "pasted", "cached"):
            assert np.array_equal(got[k], ref[k]), (rank, k)
    # the cache's 6 PNGs were saved once, by the main process, and read back the same
    pngs = sorted(os.listdir(two / "cache"))
    assert len(pngs) == 6
    assert all(p.endswith(".png") and ".tmp" not in p for p in pngs)
    assert len((two / "saves-0.txt").read_text().split()) == 6
    assert not (two / "saves-1.txt").exists()
    assert pngs == sorted(os.listdir(one / "cache"))


@pytest.mark.slow
def test_toy_erasure_rates_two_processes_same_numbers_written_once(tmp_path):
    argv = ["evaluation/toy_erasure_rates.py", "--erasure", ESD_X, "--per_style", "4", "--num_inference_steps", "3",
            "--max_target_rate", "1", "--min_retain_rate", "0", "--min_retain_ratio", "0", "--min_subject_acc", "0",
            "--min_subject_ratio", "0"]   # 36 images: 2 batches
    one = run2(argv + ["--output", str(tmp_path / "one")])
    assert one.returncode == 0, one.stderr[-2000:]
    two = run2(LAUNCH + argv + ["--output", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "rates.json").read_text()) for d in ("one", "two"))
    assert a["rows"] == b["rows"]
    assert a["bars"] == b["bars"]
    assert a["erased_confusions"] == b["erased_confusions"]
    assert sorted(os.listdir(tmp_path / "two")) == ["grid.png", "rates.json"]
    assert two.stdout.count("wrote ") == 1
    assert two.stdout.count("applied ") == 1   # the main process reports


@pytest.mark.slow
def test_grid_erasure_trains_data_parallel_and_writes_one_file(tiny_folders, tmp_path):
    """2 CPU processes, each streaming its own trajectories, mean gradients: the tensors stay equal in
    both (the trainer checks this) and only the main process writes the erasure file and its reports."""
    out = tmp_path / "dp" / "g.safetensors"
    args = ["inpainting_erasure/grid_erasure.py", "--base_model", tiny_folders["sd-inpaint"], "--preset", "basic",
            "--iterations", "3", "--num_prompts", "2", "--num_inference_steps", "4", "--stream_width", "2",
            "--output", str(out)]
    r = run2(LAUNCH + args, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["processes"] == 2
    assert report["xt_source"] == "stream"
    assert len(report["losses"]) == 3
    assert np.isfinite(report["losses"]).all()
    assert sum(report["k_histogram"]) == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["g.json", "g.loss.png", "g.prompts.csv",
                                                             "g.safetensors"]
    assert r.stdout.count("wrote ") == 1
    single = tmp_path / "one" / "g.safetensors"
    r = run2(args[:-1] + [str(single)], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(single.with_suffix(".json").read_text())["processes"] == 1
    # process 0 draws the single run's x_t; process 1's gradient, averaged in, moves the tensors elsewhere
    dp, alone = read_erasure(str(out))[0], read_erasure(str(single))[0]
    assert dp.keys() == alone.keys()
    assert any(not torch.equal(dp[k], alone[k]) for k in dp)
