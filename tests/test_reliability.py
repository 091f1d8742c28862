"""Bad input and faults end in one line and lose nothing (issue 25): each case runs the entry point
and asserts exit status 1 (SystemExit with one `error: ...` line, no traceback), the words that name
the fix, and that nothing was left in the output folder. In-process calls where the CLI contract
allows; a few subprocess runs check the contract itself."""
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from conftest import REPO, assert_error_line, assert_failed_in_one_line, one_error_line, run
from spatial_erasure import esd, grid_erasure
from spatial_erasure.models import MODELS_DIR

PROMPTS = os.path.join(REPO, "prompts", "toy_vangogh.csv")
BUNDLED = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")
FAST = ["--iterations", "3", "--num_inference_steps", "4", "--variations", "2", "--preserve", "0"]
GRID_FAST = ["--preset", "basic", "--iterations", "3", "--num_prompts", "2", "--num_inference_steps", "4",
             "--preserve", "0"]


def latin1_csv(tmp_path, header, row):
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"{header}\n{row}\n".encode("latin-1"))
    return str(path)


def esd_run(argv):
    return esd.main(esd.parse_args(argv))


def grid_run(argv):
    return grid_erasure.main(grid_erasure.parse_args(argv))


def generate(argv):
    from conftest import load_script
    gen = load_script("original_esd/generate_images.py")
    return gen.main(gen.parse_args(argv))


def export(argv):
    from spatial_erasure import export as ex
    return ex.main(ex.parse_args(argv))


def broken_erasure(tmp_path, how):
    """The bundled ESD-x file with one tensor made NaN, or cast to int64, or without its base fingerprint."""
    from spatial_erasure.erasure_file import read_erasure
    tensors, meta = read_erasure(BUNDLED)
    name = next(iter(tensors))
    if how == "unverified":
        del meta["base_fingerprint"]
    else:
        tensors[name] = tensors[name].clone().fill_(float("nan")) if how == "nan" else tensors[name].long()
    path = tmp_path / "in" / f"{how}.safetensors"
    path.parent.mkdir()
    save_file(tensors, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v)
                                            for k, v in meta.items()})
    return str(path)


# (id, call(tmp_path, out, tiny_folders) -> None, words the error line must hold)
CASES = [
    ("device-unknown", lambda t, o, f: esd_run(["--erase_concept", "x", "--device", "tpu7", "--output", o]),
     ["--device tpu7", "cpu"]),
    ("device-cuda-without-gpu", lambda t, o, f: esd_run(["--erase_concept", "x", "--device", "cuda", "--output", o]),
     ["no CUDA GPU", "--device cpu"]),
    ("grid-device-unknown", lambda t, o, f: grid_run(["--concept", "x", "--device", "tpu7",
                                                      "--output", o + "/g.safetensors"]), ["--device tpu7"]),
    ("lr-negative", lambda t, o, f: esd_run(["--erase_concept", "x", "--lr", "-0.001", "--output", o]),
     ["--lr", "above 0"]),
    ("lr-nan", lambda t, o, f: esd_run(["--erase_concept", "x", "--lr", "nan", "--output", o]), ["--lr", "finite"]),
    ("lr-zero", lambda t, o, f: esd_run(["--erase_concept", "x", "--lr", "0", "--output", o]), ["--lr", "above 0"]),
    ("grid-lr-negative", lambda t, o, f: grid_run(["--concept", "x", "--lr", "-1", "--output", o + "/g.safetensors"]),
     ["--lr", "above 0"]),
    ("batch-over-stream-width", lambda t, o, f: esd_run(["--erase_concept", "x", "--batch_size", "4",
                                                          "--stream_width", "2", "--output", o]),
     ["--stream_width 4"]),
    ("grid-batch-over-stream-width", lambda t, o, f: grid_run(["--concept", "x", "--batch_size", "4", "--xt_source",
                                                               "stream", "--stream_width", "2",
                                                               "--output", o + "/g.safetensors"]),
     ["--stream_width 4"]),
    ("concept-csv-not-utf8", lambda t, o, f: esd_run(["--erase_concept", latin1_csv(t, "concept", "Café Müller"),
                                                       "--output", o]), ["not UTF-8", "save it as UTF-8"]),
    ("prompt-csv-not-utf8", lambda t, o, f: generate(["--prompts_path", latin1_csv(t, "case_number,prompt,"
                                                      "evaluation_seed", "0,Café,1"), "--output", o]),
     ["not UTF-8"]),
    ("generate-zero-steps", lambda t, o, f: generate(["--prompts_path", PROMPTS,
                                                      "--num_inference_steps", "0", "--output", o]),
     ["--num_inference_steps must be at least 1"]),
    ("generate-resolution-30", lambda t, o, f: generate(["--prompts_path", PROMPTS,
                                                         "--base_model", f["sd"], "--resolution", "30",
                                                         "--output", o]), ["--resolution 30", "multiple"]),
    ("esd-on-inpainting-unet", lambda t, o, f: esd_run(["--erase_concept", "x", "--base_model", f["sd-inpaint"],
                                                         *FAST, "--output", o]), ["grid erasure"]),
    ("sdxl-robust", lambda t, o, f: esd_run(["--erase_concept", "x", "--base_model", f["sdxl"], *FAST, "--robust",
                                             "--output", o]), ["--no-robust"]),
    ("lr-diverges", lambda t, o, f: esd_run(["--erase_concept", "x", "--base_model", f["sd"], *FAST, "--lr", "1e10",
                                             "--output", o]), ["diverged at iteration", "lower --lr"]),
    ("grid-lr-diverges", lambda t, o, f: grid_run(["--concept", "x", "--base_model", f["sd-inpaint"], *GRID_FAST,
                                                   "--lr", "1e10", "--output", o + "/g.safetensors"]),
     ["diverged at iteration", "lower --lr"]),
    ("apply-nan-file", lambda t, o, f: generate(["--prompts_path", PROMPTS,
                                                 "--erasure", broken_erasure(t, "nan"), "--output", o]),
     ["NaN or Inf", "lower --lr"]),
    ("apply-int64-file", lambda t, o, f: generate(["--prompts_path", PROMPTS,
                                                   "--erasure", broken_erasure(t, "int"), "--output", o]),
     ["non-float tensors"]),
    ("export-kohya-nan-file", lambda t, o, f: export([broken_erasure(t, "nan"), "--format", "kohya",
                                                      "--output", o + "/x.safetensors"]), ["NaN or Inf"]),
    ("apply-unverified-file", lambda t, o, f: generate(["--prompts_path", PROMPTS, "--erasure",
                                                        broken_erasure(t, "unverified"), "--output", o]),
     ["records no base_fingerprint", "--allow_unverified"]),
    ("export-unverified-file", lambda t, o, f: export([broken_erasure(t, "unverified"), "--format", "kohya",
                                                       "--rank", "4", "--output", o + "/x.safetensors"]),
     ["records no base_fingerprint", "--allow_unverified"]),
    ("export-pipeline-with-rank", lambda t, o, f: export([BUNDLED, "--format", "pipeline", "--rank", "4",
                                                          "--output", o + "/pipe"]), ["--rank", "drop them"]),
    ("export-from-a-pickle-folder", lambda t, o, f: export([BUNDLED, "--format", "kohya", "--rank", "4",
                                                            "--base_model", pickle_folder(t, f["sd"]),
                                                            "--output", o + "/x.safetensors"]),
     ["safe_serialization=True"]),
    ("output-cannot-be-written", lambda t, o, f: esd_run(["--erase_concept", "x", "--output",
                                                           "/proc/x/e.safetensors"]), ["cannot write"]),
    ("output-under-a-file", lambda t, o, f: esd_run(["--erase_concept", "x", "--output",
                                                      str(a_file(t)) + "/e.safetensors"]), ["is a file, not a folder"]),
    ("output-is-a-folder", lambda t, o, f: grid_run(["--concept", "x", "--output", str(a_folder(t, "d.safetensors"))]),
     ["is a folder"]),
    ("output-name-too-long", lambda t, o, f: esd_run(["--erase_concept", "x" * 2000, "--output", o]),
     ["more than the file system's", "shorter --output"]),
    ("generate-output-is-a-file", lambda t, o, f: generate(["--prompts_path", PROMPTS, "--output", str(a_file(t))]),
     ["is a file, not a folder"]),
    ("grid-too-fine-writes-no-prompts", lambda t, o, f: grid_run(["--concept", "x", "--base_model", f["sd-inpaint"],
                                                                  *GRID_FAST, "--grid", "100",
                                                                  "--output", o + "/g.safetensors"]),
     ["grid 100 does not fit"]),
    ("export-wrong-shape-kohya", lambda t, o, f: export([wrong_shape(t), "--format", "kohya", "--rank", "4",
                                                         "--output", o + "/l.safetensors"]),
     ["does not fit this UNet", "1 shape mismatches", "--base_model"]),
    ("export-wrong-shape-diffusers", lambda t, o, f: export([wrong_shape(t), "--format", "diffusers", "--rank", "4",
                                                             "--output", o]), ["does not fit this UNet"]),
    ("export-wrong-shape-pipeline", lambda t, o, f: export([wrong_shape(t), "--format", "pipeline",
                                                            "--output", o + "/pipe"]), ["does not fit this UNet"]),
    ("export-onto-a-json-file", lambda t, o, f: export([BUNDLED, "--format", "kohya", "--rank", "4", "--output",
                                                        existing(t, "x.json")]), ["is a file, not a folder"]),
    ("export-cannot-be-written", lambda t, o, f: export([BUNDLED, "--format", "pipeline", "--output", "/proc/x/p"]),
     ["cannot write"]),
    ("export-lora-exists", lambda t, o, f: export([BUNDLED, "--format", "kohya", "--rank", "4", "--output",
                                                   existing(t, "l.safetensors")]), ["already exists", "--overwrite"]),
    ("export-pipeline-into-a-folder-it-did-not-write", lambda t, o, f: export(
        [BUNDLED, "--format", "pipeline", "--overwrite", "--output", str(a_folder(t, "notes"))]),
     ["did not write", "new folder"]),
    ("esd-output-exists", lambda t, o, f: esd_run(["--erase_concept", "x", "--output", existing(t, "e.safetensors")]),
     ["already exists", "--overwrite"]),
    ("grid-output-exists", lambda t, o, f: grid_run(["--concept", "x", "--output", existing(t, "g.safetensors")]),
     ["already exists", "--overwrite"]),
    ("config-key-typo", lambda t, o, f: esd_run(["--config", typo_config(t), "--output", o]),
     ["unknown setting 'iteratons'", "did you mean --iterations"]),
    ("grid-config-key-typo", lambda t, o, f: grid_run(["--config", typo_config(t), "--concept", "x",
                                                       "--output", o + "/g.safetensors"]), ["unknown setting"]),
    ("checkpoint-every-negative", lambda t, o, f: esd_run(["--erase_concept", "x", "--checkpoint_every", "-1",
                                                            "--output", o]), ["--checkpoint_every must be 0"]),
    ("sdxl-script-on-an-sd-model", lambda t, o, f: script("original_esd/esd_sdxl.py", [
        "--erase_concept", "x", "--base_model", f["sd"], "--output", o]),
     ["Stable Diffusion 1.x/2.x pipeline", "not SDXL", "run original_esd/esd_sd.py"]),
    ("sd-script-on-an-sdxl-model", lambda t, o, f: script("original_esd/esd_sd.py", [
        "--erase_concept", "x", "--base_model", f["sdxl"], "--output", o]),
     ["SDXL pipeline", "run original_esd/esd_sdxl.py"]),
]


def wrong_shape(tmp_path):
    """The bundled ESD-x file with one tensor replaced by a 3x3 one (the issue's reproduction)."""
    from spatial_erasure.erasure_file import read_erasure
    tensors, meta = read_erasure(BUNDLED)
    tensors[next(iter(tensors))] = torch.zeros(3, 3)
    path = tmp_path / "in" / "shape.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(tensors, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    return str(path)


def existing(tmp_path, name):
    """A file that is already there (outside the case's output folder), which a run must not replace."""
    path = tmp_path / "have" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text("an earlier result")
    return str(path)


def typo_config(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"erase_concept": "Vincent van Gogh", "iteratons": 50}))
    return str(path)


def script(path, argv):
    from conftest import load_script
    module = load_script(path)
    return module.main(module.parse_args(argv))


def pickle_folder(tmp_path, folder):
    """A copy of a pipeline folder whose UNet has pickle (.bin) weights only (transformers writes
    the text encoder as safetensors whatever it is asked)."""
    from diffusers import DiffusionPipeline
    out = tmp_path / "bin_pipeline"
    DiffusionPipeline.from_pretrained(folder).save_pretrained(str(out), safe_serialization=False)
    assert not list((out / "unet").glob("*.safetensors"))
    assert list((out / "unet").glob("*.bin"))
    return str(out)


def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def a_folder(tmp_path, name):
    path = tmp_path / name
    path.mkdir()
    return path


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_in_one_line_and_writes_nothing(case, tiny_folders, tmp_path):
    name, call, words = case
    if name == "device-cuda-without-gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        call(tmp_path, str(out), tiny_folders)
    assert_error_line(str(e.value.code), *words)
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), sorted(out.rglob("*"))
    for kept in (tmp_path / "have").glob("*"):
        assert kept.read_text() == "an earlier result", "an existing output is never replaced unasked"


def test_a_foreign_or_truncated_checkpoint_is_refused_in_one_line(tiny_folders, tmp_path):
    out = tmp_path / "x.safetensors"
    state = tmp_path / "x.state.safetensors"
    for content in (b"\x00garbage", None):
        if content is None:                        # a valid safetensors file of another shape
            save_file({"params.0": torch.zeros(3)}, str(state), metadata={"step": "2", "extra": "{}"})
        else:
            state.write_bytes(content)
        with pytest.raises(SystemExit) as e:
            esd_run(["--erase_concept", "x", "--base_model", tiny_folders["sd"], *FAST, "--output", str(out)])
        message = str(e.value.code)
        assert ("not a checkpoint of this run" if content else "records no config") in message, message
        assert_error_line(message, "--restart")
        assert not out.exists()


def test_a_diverging_run_exits_nonzero_names_the_iteration_and_writes_no_file(tmp_path):
    """The command line itself: `--lr 1e10` stops within a few iterations, exit 1, one line, no file."""
    r = run(["original_esd/esd_sd.py", "--erase_concept", "Vincent van Gogh", "--iterations", "20", "--xt_source",
             "stream", "--stream_width", "2", "--num_inference_steps", "10", "--lr", "1e10", "--preserve", "0",
             "--variations", "2", "--output", str(tmp_path)], timeout=600)
    lines = one_error_line(r)
    assert_failed_in_one_line(r, "lower --lr")
    it = int(lines[0].split("diverged at iteration ")[1].split(":")[0])
    assert it <= 5, lines[0]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".safetensors" and ".state" not in p.name]


def test_bad_device_from_the_command_line_is_one_line(tmp_path):
    r = run(["original_esd/esd_sd.py", "--erase_concept", "x", "--device", "tpu7", "--output", str(tmp_path)])
    assert_failed_in_one_line(r, "--device tpu7")
    assert not list(tmp_path.iterdir())


def test_a_utf8_csv_with_a_byte_order_mark_is_read(tmp_path):
    from spatial_erasure.prompts import parse_concepts, read_prompt_csv
    path = tmp_path / "bom.csv"
    path.write_bytes("concept\nCafé Müller\n".encode("utf-8-sig"))
    assert parse_concepts(str(path)) == [("Café Müller", None)]
    path.write_bytes("case_number,prompt,evaluation_seed\n0,Café,1\n".encode("utf-8-sig"))
    assert read_prompt_csv(str(path)) == [{"case_number": 0, "prompt": "Café", "evaluation_seed": 1}]


def test_a_file_size_limit_stops_the_run_before_training(tiny_folders, tmp_path):
    """`ulimit -f 500`: the checkpoint of a full-UNet run would not fit; one line before the first iteration."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (500 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    r = run(["original_esd/esd_sd.py", "--erase_concept", "x", "--base_model", tiny_folders["sd"], *FAST,
             "--train_method", "esd-all", "--checkpoint_every", "1", "--output", str(tmp_path / "e.safetensors")],
            timeout=600, preexec_fn=limit)
    assert_failed_in_one_line(r, "ulimit -f")
    assert not list(tmp_path.iterdir())


def test_atomic_writes_use_unique_temporaries_and_leave_none_behind(tmp_path):
    from spatial_erasure.checkpoint import atomic_save
    from spatial_erasure.files import atomic_path
    path = str(tmp_path / "x.safetensors")
    with atomic_path(path) as a, atomic_path(path) as b:
        assert a != b
        assert os.path.dirname(a) == str(tmp_path), a
        open(a, "w").close()
        open(b, "w").close()
    with pytest.raises(RuntimeError):
        with atomic_path(path) as c:
            open(c, "w").close()
            raise RuntimeError("the write failed")
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"], os.listdir(tmp_path)
    with pytest.raises(Exception):
        atomic_save({"a": object()}, path)         # not a tensor: the save fails
    assert sorted(os.listdir(tmp_path)) == ["x.safetensors"], os.listdir(tmp_path)
    atomic_save({"a": torch.ones(2)}, path)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, "the usual permissions, not mkstemp's 0600"


def test_generate_images_never_reuses_another_models_images(tmp_path, capsys):
    csv = tmp_path / "one.csv"
    csv.write_text("case_number,prompt,evaluation_seed\n0,a painting of a house by Vincent van Gogh,3\n")
    common = ["--prompts_path", str(csv), "--num_inference_steps", "2", "--model_name", "X", "--output",
              str(tmp_path / "img")]
    generate(common)
    assert "1 images generated, 0 already present" in capsys.readouterr().out
    generate(common)                               # the same model and sampling: reused
    assert "0 images generated, 1 already present" in capsys.readouterr().out
    for flags, words in ((["--erasure", BUNDLED], ["another model", "erasure_hash"]),
                         (["--num_inference_steps", "3"], ["num_inference_steps 2 there, 3 here"])):
        with pytest.raises(SystemExit) as e:
            generate(common + flags)
        assert_error_line(str(e.value.code), *words)
    assert sorted(os.listdir(tmp_path / "img" / "X")) == ["0_0.png", "manifest.json"]


def test_an_unverified_file_is_applied_only_when_asked(tmp_path, capsys):
    csv = tmp_path / "one.csv"
    csv.write_text("case_number,prompt,evaluation_seed\n0,a painting of a house by Vincent van Gogh,3\n")
    generate(["--prompts_path", str(csv), "--num_inference_steps", "2", "--erasure",
              broken_erasure(tmp_path, "unverified"), "--allow_unverified", "--output", str(tmp_path / "img")])
    assert "1 images generated" in capsys.readouterr().out


def test_a_run_removes_the_temporaries_a_killed_run_left_beside_its_output(tiny_folders, tmp_path):
    stale = [tmp_path / ".x.safetensors.k3j2a1b0.tmp", tmp_path / ".x.state.safetensors.zz9q1w2e.tmp",
             tmp_path / ".x.loss.png.abcdefgh.tmp.png"]
    other = tmp_path / ".y.safetensors.k3j2a1b0.tmp"            # another output's: not ours to remove
    for f in stale + [other]:
        f.write_bytes(b"half a file")
    esd_run(["--erase_concept", "x", "--base_model", tiny_folders["sd"], *FAST, "--output",
             str(tmp_path / "x.safetensors")])
    assert not any(f.exists() for f in stale)
    assert other.exists(), "another output's temporary is left alone"
    assert sorted(os.listdir(tmp_path)) == [".y.safetensors.k3j2a1b0.tmp", "x.json", "x.safetensors"]


def test_a_full_disk_stops_the_run_before_training(tiny_folders, tmp_path, monkeypatch):
    from collections import namedtuple
    from spatial_erasure import files, trainer
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    called = []
    monkeypatch.setattr(trainer, "check_finite", lambda *a: called.append(a))
    with pytest.raises(SystemExit) as e:
        esd_run(["--erase_concept", "x", "--base_model", tiny_folders["sd"], *FAST, "--output", str(tmp_path)])
    assert_error_line(str(e.value.code), "MiB free", "free some space")
    assert not called, "stopped before the first iteration"
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def earlier_export(tmp_path):
    """A pipeline export of the bundled ESD-x file at tmp_path/pipe; returns (path, its export.json text)."""
    from spatial_erasure.export import export as run_export
    out = tmp_path / "pipe"
    run_export(BUNDLED, "pipeline", str(out))
    return out, (out / "export.json").read_text()


def test_a_pipeline_export_under_a_file_size_limit_is_one_line_and_writes_nothing(tmp_path):
    """`ulimit -f 100`: the UNet file would not fit; one line before any write, nothing left behind."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    r = run(["-m", "spatial_erasure.export", BUNDLED, "--format", "pipeline", "--output", str(tmp_path / "pipe")],
            timeout=600, preexec_fn=limit)
    assert_failed_in_one_line(r, "ulimit -f")
    assert not list(tmp_path.iterdir())


def test_a_failed_pipeline_write_keeps_the_earlier_export_and_leaves_no_temporary(tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline
    out, before = earlier_export(tmp_path)

    def full_disk(self, folder, **kw):
        os.makedirs(os.path.join(folder, "vae"))
        open(os.path.join(folder, "vae", "config.json"), "w").close()
        raise OSError(27, "File too large")
    monkeypatch.setattr(DiffusionPipeline, "save_pretrained", full_disk)
    with pytest.raises(SystemExit) as e:
        export([BUNDLED, "--format", "pipeline", "--overwrite", "--output", str(out)])
    assert_error_line(str(e.value.code), "could not write", "File too large", "nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["pipe"], "no temporary folder, no lock"
    assert (out / "export.json").read_text() == before


def test_kill_9_mid_pipeline_export_keeps_the_earlier_export_and_the_next_export_tidies(tmp_path):
    """A pipeline export killed (SIGKILL) once its temporary folder is written, before the rename: the
    earlier export is intact; the next export to the same path leaves only its own folder."""
    out, before = earlier_export(tmp_path)
    killed = ("import os, signal, sys\n"
              "from diffusers import DiffusionPipeline\n"
              "from spatial_erasure import export\n"
              "save = DiffusionPipeline.save_pretrained\n"
              "def save_then_die(self, folder, **kw):\n"
              "    save(self, folder, **kw)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n"
              "DiffusionPipeline.save_pretrained = save_then_die\n"
              "export.main(export.parse_args(sys.argv[1:]))\n")
    r = run(["-c", killed, BUNDLED, "--format", "pipeline", "--overwrite", "--output", str(out)], timeout=600)
    assert r.returncode == -9, r.stderr[-2000:]
    assert (out / "export.json").read_text() == before, "the earlier export is intact"
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")], "the killed run left its temporary"
    export([BUNDLED, "--format", "pipeline", "--overwrite", "--output", str(out)])
    assert sorted(os.listdir(tmp_path)) == ["pipe"], "the next export removed the temporary (and its lock)"
    assert json.loads((out / "export.json").read_text())["exact"]
