"""Checkpoints belong to their run, and a killed run resumes exactly (issue 25): a real subprocess
is killed with SIGKILL at a checkpoint, rerun with the same flags, and its erasure file equals an
uninterrupted run's bit for bit; a checkpoint of another run is refused in one line naming what
differs; two runs on one output: one trains, the other refuses."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, assert_error_line, assert_failed_in_one_line, run
from spatial_erasure import esd, trainer
from spatial_erasure.erasure_file import read_erasure

ESD = ["original_esd/esd_sd.py", "--erase_concept", "Vincent van Gogh", "--iterations", "16", "--checkpoint_every",
       "4", "--num_inference_steps", "10", "--variations", "2", "--preserve", "0"]
GRID = ["inpainting_erasure/grid_erasure.py", "--concept", "Vincent van Gogh", "--recipe", "paper", "--preset",
        "basic", "--iterations", "16", "--checkpoint_every", "4", "--num_prompts", "2", "--num_inference_steps", "6"]


def popen(argv):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def kill_at_checkpoint(argv, state):
    """Start the run, SIGKILL it as soon as its first checkpoint exists; the checkpoint's step."""
    p = popen(argv)
    deadline = time.time() + 300
    while not os.path.exists(state) and p.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "killed mid-run"
    assert os.path.exists(state), "after a checkpoint"
    return trainer.read_checkpoint_info(state)[0]


CASES = {"esd-sample": (ESD + ["--recipe", "paper", "--xt_source", "sample"], "sd"),
         "esd-stream": (ESD + ["--xt_source", "stream", "--stream_width", "2"], "sd"),
         "grid-basic-9ch": (GRID + ["--xt_source", "sample"], "sd-inpaint")}


# esd-stream (the recommended recipe) runs in the default suite; the other two in -m slow (about 30 s each)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "esd-stream" else n for n in CASES])
def test_a_killed_and_resumed_run_equals_an_uninterrupted_one_bitwise(name, tiny_folders, tmp_path):
    argv, kind = CASES[name]
    argv = argv + ["--base_model", tiny_folders[kind]]
    ref, out = tmp_path / "ref.safetensors", tmp_path / "killed.safetensors"
    r = run(argv + ["--output", str(ref)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    step = kill_at_checkpoint(argv + ["--output", str(out)], str(tmp_path / "killed.state.safetensors"))
    assert 0 < step < 16
    r = run(argv + ["--output", str(out)], timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"at iteration {step}" in r.stdout, r.stdout[-500:]
    a, b = read_erasure(str(ref))[0], read_erasure(str(out))[0]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), max(float((a[k] - b[k]).abs().max()) for k in a)
    assert not os.path.exists(tmp_path / "killed.state.safetensors"), "the finished run removes its checkpoint"
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], os.listdir(tmp_path)


class Stop(Exception):
    pass


def interrupted(monkeypatch, at):
    """Make the in-process run stop after iteration `at` (its checkpoints so far stay)."""
    check = trainer.check_finite

    def stop(it, *a):
        check(it, *a)
        if it + 1 == at:
            raise Stop
    monkeypatch.setattr(trainer, "check_finite", stop)


def test_a_checkpoint_of_another_run_is_refused_and_iterations_may_grow(tiny_folders, tmp_path, monkeypatch):
    out = str(tmp_path / "x.safetensors")
    base = ["--base_model", tiny_folders["sd"], "--iterations", "6", "--checkpoint_every", "2", "--num_inference_steps",
            "4", "--variations", "2", "--preserve", "0", "--output", out]
    with monkeypatch.context() as m:
        interrupted(m, 3)
        with pytest.raises(Stop):
            esd.main(esd.parse_args(["--erase_concept", "Vincent van Gogh", *base]))
    assert trainer.read_checkpoint_info(str(tmp_path / "x.state.safetensors"))[0] == 2
    for flags, words in ((["--erase_concept", "Claude Monet"], ["checkpoint of another run", "concept",
                                                                 "--restart"]),
                         (["--erase_concept", "Vincent van Gogh", "--seed", "9"], ["--seed (0 there, 9 here)"]),
                         (["--erase_concept", "Vincent van Gogh", "--iterations", "1"],
                          ["holds 2 iterations", "--iterations 2 or more"])):
        with pytest.raises(SystemExit) as e:
            esd.main(esd.parse_args(base + flags))
        assert_error_line(str(e.value.code), *words)
        assert not os.path.exists(out)
    rates = []
    step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *a, **kw)
    with monkeypatch.context() as m:
        m.setattr(torch.optim.Adam, "step", spy)
        meta = read_erasure(esd.main(esd.parse_args(["--erase_concept", "Vincent van Gogh", *base, "--iterations",
                                                     "8", "--lr", "1e-4"])))[1]
    assert meta["iterations_done"] == 8, "iterations grew"
    assert meta["args"]["lr"] == 1e-4, "the flags' lr is recorded"
    assert rates == [1e-4] * 6, "iterations 3-8 ran at the flags' lr, not the checkpoint's"
    assert len(read_erasure(out)[1]["args"]) > 10
    with pytest.raises(SystemExit) as e:           # the finished file is kept unless --overwrite
        esd.main(esd.parse_args(["--erase_concept", "Vincent van Gogh", *base]))
    assert_error_line(str(e.value.code), "already exists", "--overwrite")
    with monkeypatch.context() as m:               # --restart ignores another run's checkpoint
        interrupted(m, 3)
        with pytest.raises(Stop):
            esd.main(esd.parse_args(["--erase_concept", "Vincent van Gogh", *base, "--overwrite"]))
    out2 = esd.main(esd.parse_args(["--erase_concept", "Claude Monet", *base, "--restart", "--overwrite"]))
    assert read_erasure(out2)[1]["concept"] == "Claude Monet"


@pytest.mark.slow      # 25 s: two concurrent trainers; the default suite stays under 8 min
def test_two_runs_on_one_output_one_trains_the_other_refuses(tiny_folders, tmp_path):
    """3 rounds (the benchmark runs 10): both start together; exactly one writes a valid file."""
    argv = ESD + ["--xt_source", "stream", "--stream_width", "2", "--base_model", tiny_folders["sd"],
                  "--checkpoint_every", "1"]
    for i in range(3):
        out = tmp_path / f"r{i}.safetensors"
        procs = [popen(argv + ["--output", str(out)]) for _ in range(2)]
        errs = [p.communicate(timeout=600)[1] for p in procs]
        codes = sorted(p.returncode for p in procs)
        assert codes == [0, 1], (codes, [e[-800:] for e in errs])
        loser = errs[[p.returncode for p in procs].index(1)]
        lines = [line for line in loser.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, loser[-800:]
        assert "Traceback" not in loser, loser[-800:]
        assert_error_line(lines[0], "another run is writing")
        assert read_erasure(str(out))[1]["iterations_done"] == 16
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".")], os.listdir(tmp_path)


def test_the_lock_is_released_when_a_run_fails(tmp_path):
    r = run(["original_esd/esd_sd.py", "--erase_concept", "x", "--base_model", str(tmp_path / "nowhere"),
             "--output", str(tmp_path / "o.safetensors")])
    assert_failed_in_one_line(r)
    assert os.listdir(tmp_path) == [], os.listdir(tmp_path)
