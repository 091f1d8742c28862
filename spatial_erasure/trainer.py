"""The erasure training loop (ESD and grid erasure are configurations of it), and the model
prepared for it. (The toy model itself is trained by toyart/train_sd.py, a different thing.)

    report = train(loss_fn, params, out_path, iterations=200, lr=5e-5, metadata={...})

`loss_fn(iteration, rng)` returns a scalar loss; `params` ({name: fp32 parameter}) are the only
tensors the optimizer sees. Adam at a constant learning rate (as ESD), a tqdm bar with the loss,
resumable checkpoints beside the output, then the erasure file (changed tensors only) and a JSON
training log (loss per iteration, wall time, peak memory).

Data-parallel under `accelerate launch`: every process draws its own x_t (seeds offset by the
process index, `Student.process_seed`), gradients of the trained tensors are averaged, and the
main process alone writes checkpoints, the erasure file and the log.
"""
import copy
import json
import math
import os
import random
import resource
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import reduce
from diffusers.utils import logging as diffusers_logging
from safetensors import safe_open
from tqdm import tqdm

from .checkpoint import load_state, save_state
from .distributed import process_device, process_state
from .erasure_file import save_erasure
from .errors import InputError
from .families import denoiser_of, family_of
from .files import check_room
from .models import describe, fingerprint, load_pipeline
from .reports import write_json
from .selection import count, select_parameters

PRECISIONS = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}
TEACHERS = {"originals": "the trained UNet called with the original values of the trained tensors (no second UNet)",
            "copy": "a second full frozen UNet, as the reference ESD code keeps (for memory comparisons)"}


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Student:
    """A pipeline prepared for erasure training: frozen weights in the compute dtype, the trained
    tensors (`params`) in fp32 with gradients, and the teacher: `teacher_unet` called with
    `teacher_params` (the trained UNet with the original values of its trained tensors, kept in
    the compute dtype; or, with teacher="copy", a second frozen UNet and None)."""
    pipe: object
    params: dict
    teacher_unet: object
    teacher_params: dict
    base_fingerprint: str
    device: str
    dtype: torch.dtype
    state: PartialState
    load_peak_mb: float = 0.0

    @property
    def denoiser(self):
        """The trained denoiser (pipe.unet or pipe.transformer, as the model family says)."""
        return denoiser_of(self.pipe)

    def autocast(self):
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype) if self.dtype != torch.float32 \
            else nullcontext()

    def process_seed(self, seed):
        """Each data-parallel process draws its own x_t; process 0 keeps `seed` (single-process runs unchanged)."""
        return seed + 1000 * self.state.process_index

    def offload(self, *names):
        """Move pipeline parts whose work is done (text encoders, VAE) off the GPU."""
        if torch.device(self.device).type != "cpu":
            for name in names:
                if getattr(self.pipe, name, None) is not None:
                    getattr(self.pipe, name).to("cpu")
            torch.cuda.empty_cache()


def prepare(base_model, train_method, device=None, mixed_precision="no", task="text2img", teacher="originals",
            gradient_checkpointing=False, channels_last=False, compile=False):
    """Load, fingerprint (fp32, as stored), cast, and select the trained tensors: no second UNet
    unless teacher="copy". The trained tensors keep their stored fp32 values (they never pass
    through bf16); their originals are kept in the compute dtype, the precision the teacher runs in."""
    state, device = process_state(), str(process_device(device))
    dtype = PRECISIONS[mixed_precision] or torch.float32
    pipe = load_pipeline(base_model, task)         # fp32 on the CPU: the fingerprint is that of the file
    denoiser = denoiser_of(pipe)
    if task == "text2img" and denoiser.config.in_channels == 9:
        raise InputError(f"{base_model} has an inpainting UNet ({denoiser.config.in_channels} input channels) and "
                         "ESD trains text-to-image ones; erase from it with grid erasure "
                         "(inpainting_erasure/scaled_grid_erasure.py), or pass a text-to-image --base_model")
    base_fingerprint = fingerprint(denoiser)
    if state.is_main_process:
        print(describe(pipe, base_fingerprint))
    params = select_parameters(denoiser, train_method)
    stored = {n: p.data for n, p in params.items()}
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()        # .to(dtype) warns about an empty list of fp32 modules
    pipe.to(device=device, dtype=dtype)
    diffusers_logging.set_verbosity(level)
    denoiser.requires_grad_(False)
    if channels_last:
        denoiser.to(memory_format=torch.channels_last)
    second = copy.deepcopy(denoiser) if teacher == "copy" else None
    for n, p in params.items():                    # trained tensors in fp32 whatever the frozen dtype
        p.data = stored[n].to(device)
        p.requires_grad_(True)
    del stored
    originals = None if second is not None else {n: p.detach().to(dtype).clone() for n, p in params.items()}
    if gradient_checkpointing:                     # the student's forward only: the teacher runs without grad
        denoiser.enable_gradient_checkpointing()
    if compile:
        for module in [denoiser] + ([second] if second is not None else []):
            module.compile()
    # the peak from here on is training's; loading maps the safetensors file on top of the model
    return Student(pipe, params, second or denoiser, originals, base_fingerprint, device, dtype, state,
                   load_peak_mb=round(reset_peak_memory(device), 1))


def originals(st):
    """The trained tensors' values before training: the teacher's (its own copy with --teacher copy)."""
    if st.teacher_params is not None:
        return st.teacher_params
    own = dict(st.teacher_unet.named_parameters())
    return {n: own[n] for n in st.params}


def resolution(pipe, requested=None):
    """The training resolution (default: the model's native size) and the latent shape for it, as the
    model family says (the VAE's factor times the UNet's halvings or the transformer's patches)."""
    family = family_of(pipe)
    res = family.native_resolution(pipe) if requested is None else requested
    step = family.resolution_step(pipe)
    if res < step or res % step:
        raise InputError(f"--resolution {res} must be a positive multiple of {step} for this model (its VAE and "
                         f"denoiser downsample by that much); pass e.g. {max(step, res - res % step)}")
    return res, (family.latent_channels(denoiser_of(pipe)), res // pipe.vae_scale_factor, res // pipe.vae_scale_factor)


def peak_memory_mb(device):
    """Peak GPU memory allocated (CUDA) or peak resident memory of this process (CPU), in MiB, since
    the last reset_peak_memory (on Linux; elsewhere since the process started)."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def reset_peak_memory(device):
    """Start a new peak-memory window (after loading, so the peak is that of training); returns the
    peak so far, which includes loading (a safetensors file is mapped while it is read)."""
    before = peak_memory_mb(device)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        try:                                       # Linux: "5" resets this process's VmHWM to its current RSS
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
    return before


def forward_equivalents(sampling_forwards, iterations, teacher_rows, student_rows, rows=None, checkpointing=False,
                        attack_rows=0):
    """UNet cost per iteration: `forwards_per_iteration` (x_t sampling averaged over the run, the
    batched teacher's rows, the student's rows, --robust's attack rows) and
    `forward_equivalents_per_iteration`, which also counts every backward as 2 forwards (the
    student's: 3 with gradient checkpointing, which recomputes the forward); `_per_row` divides by
    the x_t rows (cases) trained per iteration."""
    sampling = sampling_forwards / max(1, iterations)
    fe = sampling + teacher_rows + student_rows * (4 if checkpointing else 3) + attack_rows * 3
    return {"forwards_per_iteration": round(sampling + teacher_rows + student_rows + attack_rows, 2),
            "training_forward_equivalents": fe - sampling,
            "forward_equivalents_per_iteration": round(fe, 2),
            "forward_equivalents_per_row": round(fe / (rows or student_rows), 2)}


def check_finite(it, loss, params, lr, state_path):
    """One line (InputError) at the first non-finite loss or trained tensor: the run diverged. Nothing
    is written; the last good checkpoint, if any, stays for a resume with a lower --lr."""
    if math.isfinite(loss) and math.isfinite(float(sum(p.detach().double().sum() for p in params.values()))):
        return
    what = f"the loss is {loss}" if not math.isfinite(loss) else "a trained tensor holds NaN or Inf"
    kept = f"; the last good checkpoint {state_path} is kept" if os.path.exists(state_path) else ""
    raise InputError(f"training diverged at iteration {it + 1}: {what} at --lr {lr:g}; pass a lower --lr "
                     f"(e.g. {lr / 10:g}); no erasure file was written{kept}")


def check_space(out_path, params, checkpoints):
    """InputError in one line, before the first iteration, when the erasure file and its checkpoints
    (params and Adam's two moments, fp32, a temporary beside the old one) would not fit: the free
    disk space, or this process's file-size limit (ulimit -f)."""
    n = sum(p.numel() for p in params.values()) * 4
    largest, total = (3 * n if checkpoints else n), n + (6 * n if checkpoints else 0) + 2**20
    check_room(out_path, total, largest, " (erasure file and checkpoints)")


# Flags that may change between a run and its resume (a checkpoint keeps the rest of its run's config);
# --lr too, so a diverged run resumes its last good checkpoint at a lower rate.
RESUMABLE = ("iterations", "lr", "checkpoint_every", "resume", "restart", "overwrite", "device", "output",
             "save_path")


def run_config(metadata):
    """What a checkpoint must share with the run that resumes it: the metadata (base fingerprint,
    method, concept, ...) and every argument but RESUMABLE, as JSON values."""
    args = {k: v for k, v in metadata.get("args", {}).items() if k not in RESUMABLE}
    return json.loads(json.dumps({**{k: v for k, v in metadata.items() if k != "args"}, "args": args}, default=str))


def config_differences(theirs, ours, prefix=""):
    """'--flag (theirs there, ours here)' for every setting that differs (args as flags)."""
    out = []
    for k in sorted(set(theirs) | set(ours)):
        a, b = theirs.get(k), ours.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, "--" if k == "args" else f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} ({str(a)[:40]} there, {str(b)[:40]} here)")
    return out


def rng_state(rng):
    """Every random generator the loop draws from: torch's (CPU, and CUDA where present) as tensors;
    the loop's numpy Generator, numpy's and Python's global ones as JSON."""
    tensors = [torch.get_rng_state()] + [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    g = np.random.get_state()
    return tensors, {"loop": rng.bit_generator.state, "numpy": [g[0], g[1].tolist(), *g[2:]],
                     "python": random.getstate(), "cuda_devices": torch.cuda.device_count()}


def set_rng_state(rng, tensors, info):
    torch.set_rng_state(tensors[0])
    for i, t in enumerate(tensors[1:]):
        torch.cuda.set_rng_state(t, i)
    rng.bit_generator.state = info["loop"]
    g = info["numpy"]
    np.random.set_state((g[0], np.array(g[1], dtype=np.uint32), *g[2:]))
    v = info["python"]
    random.setstate((v[0], tuple(v[1]), v[2]))


def read_checkpoint_info(state_path):
    """(step, extra JSON) of a checkpoint without loading its tensors; InputError for a file that is
    not one of ours."""
    try:
        with safe_open(state_path, "pt") as f:
            meta = f.metadata() or {}
        return int(meta["step"]), json.loads(meta["extra"])
    except Exception as e:                         # truncated, foreign: safetensors only, never unpickled
        raise foreign_checkpoint(state_path, e) from None


def foreign_checkpoint(state_path, error):
    """The one-line InputError for a state file that is not a checkpoint of this run."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return InputError(f"{state_path} is not a checkpoint of this run ({first[:200]}); delete it, or pass "
                      "--restart to start over")


def train(loss_fn, st, out_path, iterations, lr, metadata, seed=0, checkpoint_every=50, resume=True, log_every=1,
          desc="erasing", extra_report=None, sources=(), lock=None):
    """Run the loop on the Student `st`; returns the report dict, also written to out_path with .json
    instead of .safetensors (by the main process; every process returns it).

    Checkpoints (OUT.state.safetensors, every `checkpoint_every` iterations) hold the trained tensors,
    Adam's moments, every RNG, the x_t `sources`' state (their `state()`/`restore()`) and the run's
    config (`run_config`): a run resumes only a checkpoint of the same config (`--iterations` may
    grow), and a single-process resumed run equals the uninterrupted one bit for bit on the CPU.
    `lock` (files.OutputLock of out_path, held since the run began) is released at the end."""
    params, device, main = st.params, st.device, st.state.is_main_process
    for name, p in params.items():
        if p.dtype != torch.float32:
            raise ValueError(f"trainable tensor {name} is {p.dtype}; keep trained tensors fp32 (Adam drops "
                             "small updates on bf16 weights)")
    names = list(params)
    opt = torch.optim.Adam([params[n] for n in names], lr=lr)
    scaler = torch.amp.GradScaler(enabled=st.dtype is torch.float16 and str(device).startswith("cuda"))
    parallel = st.state.num_processes > 1
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    check_space(out_path, params, checkpoint_every and checkpoint_every < iterations)
    state_path = out_path.replace(".safetensors", "") + ".state.safetensors"
    config = run_config(metadata)
    start_it, losses, seconds0, run_id = 0, [], 0.0, uuid.uuid4().hex[:12]
    rng = np.random.default_rng(st.process_seed(seed))
    torch.manual_seed(st.process_seed(seed))

    def modules(rng_tensors, states):
        return {"params": [params[n] for n in names], "rng": rng_tensors,
                **{f"source{i}": tensors for i, (tensors, _) in enumerate(states)}}

    if resume and os.path.exists(state_path):
        start_it, extra = read_checkpoint_info(state_path)
        if "config" not in extra:
            raise InputError(f"{state_path} was written by an older version and records no config; pass --restart "
                             "to start over (the checkpoint is replaced)")
        differ = config_differences(extra["config"], config)
        if differ:
            raise InputError(f"{state_path} is the checkpoint of another run: it differs in {'; '.join(differ[:4])}"
                             f"{' and more' if len(differ) > 4 else ''}; pass the same flags to resume it, or "
                             "--restart to start over")
        if start_it > iterations:
            raise InputError(f"{state_path} holds {start_it} iterations, more than --iterations {iterations}; pass "
                             f"--iterations {start_it} or more to resume it, or --restart to start over")
        exact = not parallel and extra.get("rng", {}).get("cuda_devices") == torch.cuda.device_count()
        rng_tensors = rng_state(rng)[0] if exact else []
        mods = modules(rng_tensors, [s.state() for s in sources])
        if not exact:                              # other processes (or another machine): params and moments only
            mods = {"params": mods["params"]}
        try:
            load_state(state_path, mods, opt)
        except Exception as e:
            raise foreign_checkpoint(state_path, e) from None
        losses, seconds0, run_id = extra["losses"], extra["seconds"], extra.get("run_id", run_id)
        for group in opt.param_groups:             # the flags rule, not the checkpoint's settings
            group["lr"] = lr
        if exact:
            set_rng_state(rng, rng_tensors, extra["rng"])
            for i, s in enumerate(sources):
                s.restore(mods[f"source{i}"], extra["sources"][i])
        else:                                      # as before: a fresh draw per process (not exact)
            rng = np.random.default_rng(st.process_seed(seed) + start_it)
            torch.manual_seed(st.process_seed(seed) + start_it)
        print(f"resuming run {run_id} from {state_path} at iteration {start_it}")

    def checkpoint(step):
        rng_tensors, rng_info = rng_state(rng)
        states = [s.state() for s in sources]
        save_state(state_path, modules(rng_tensors, states), opt, step,
                   {"losses": losses, "seconds": seconds0 + time.time() - t0, "config": config, "run_id": run_id,
                    "rng": rng_info, "sources": [info for _, info in states]})

    t0 = time.time()
    bar = tqdm(range(start_it, iterations), desc=desc, initial=start_it, total=iterations, disable=not main)
    for it in bar:
        with st.autocast():
            loss = loss_fn(it, rng)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if parallel:                               # data-parallel: every process steps with the mean gradient
            for p in params.values():
                p.grad = reduce(p.grad, "mean")
            loss = reduce(loss.detach(), "mean")
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        check_finite(it, losses[-1], params, lr, state_path)
        if it % log_every == 0:
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
        if main and checkpoint_every and (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
            checkpoint(it + 1)
    seconds = seconds0 + time.time() - t0
    if parallel:                                   # every process must end with the same tensors (mean gradients)
        total = torch.stack([p.detach().double().sum() for p in params.values()]).sum().reshape(1)
        spread = float(reduce(total, "sum") / st.state.num_processes - total)
        if abs(spread) > 1e-6 * max(1.0, abs(float(total))):
            raise RuntimeError(f"data-parallel processes diverged (checksum spread {spread:.3g}); report this")
    n_tensors, n_params = count(params)
    report = {**metadata, "iterations_done": iterations, "processes": st.state.num_processes,
              "train_seconds": round(seconds, 2), "seconds_per_iteration": round(seconds / max(1, iterations), 4),
              "peak_memory_mb": round(peak_memory_mb(device), 1), "load_peak_memory_mb": st.load_peak_mb,
              "tensors_changed": n_tensors,
              "parameters_changed": n_params, **(extra_report() if callable(extra_report) else extra_report or {})}
    if main:
        save_erasure(out_path, params, report)
        write_json(out_path.replace(".safetensors", "") + ".json", {**report, "losses": losses})
        if os.path.exists(state_path):
            os.remove(state_path)
    if lock is not None:
        lock.release()
    st.state.wait_for_everyone()
    return {**report, "losses": losses}
