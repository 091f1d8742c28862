"""The one training loop: ESD and grid erasure are configurations of it.

    report = train(loss_fn, params, out_path, iterations=200, lr=5e-5, metadata={...})

`loss_fn(iteration, rng)` returns a scalar loss; `params` ({name: fp32 parameter}) are the only
tensors the optimizer sees. Adam at a constant learning rate (as ESD), a tqdm bar with the loss,
resumable checkpoints beside the output, then the erasure file (changed tensors only) and a JSON
training log (loss per iteration, wall time, peak memory).
"""
import os
import random
import resource
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from tqdm import tqdm

from .checkpoint import load_state, save_state
from .models import describe, fingerprint, load_pipeline
from .params import count, save_erasure, select_parameters
from .reports import write_json

PRECISIONS = {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Student:
    """A pipeline prepared for erasure training: frozen weights in the compute dtype, the trained
    tensors (`params`) in fp32 with gradients, and their original values (`originals`, the teacher)."""
    pipe: object
    params: dict
    originals: dict
    base_fingerprint: str
    device: str
    dtype: torch.dtype

    def autocast(self):
        return torch.autocast(torch.device(self.device).type, dtype=self.dtype) if self.dtype != torch.float32 \
            else nullcontext()


def prepare(base_model, train_method, device=None, mixed_precision="no", task="text2img"):
    """Load, fingerprint (fp32, as stored), cast, and select the trained tensors: no second UNet."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = PRECISIONS[mixed_precision] or torch.float32
    pipe = load_pipeline(base_model, task)         # fp32 on the CPU: the fingerprint is that of the file
    base_fingerprint = fingerprint(pipe.unet)
    print(describe(pipe, base_fingerprint))
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()        # .to(dtype) warns about an empty list of fp32 modules
    pipe.to(device=device, dtype=dtype)
    diffusers_logging.set_verbosity(level)
    pipe.unet.requires_grad_(False)
    params = select_parameters(pipe.unet, train_method)
    for p in params.values():                      # trained tensors in fp32 whatever the frozen dtype
        p.data = p.data.float()
        p.requires_grad_(True)
    originals = {n: p.detach().clone() for n, p in params.items()}
    return Student(pipe, params, originals, base_fingerprint, device, dtype)


def resolution(pipe, requested=None):
    """The training resolution (default: the model's native size) and the latent shape for it."""
    res = requested or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if res % pipe.vae_scale_factor:
        raise SystemExit(f"--resolution {res} must be a multiple of {pipe.vae_scale_factor}")
    return res, (pipe.unet.config.out_channels, res // pipe.vae_scale_factor, res // pipe.vae_scale_factor)


def peak_memory_mb(device):
    """Peak GPU memory allocated (CUDA) or peak resident memory of this process (CPU), in MiB."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def train(loss_fn, params, out_path, iterations, lr, metadata, seed=0, mixed_precision="no", device="cpu",
          checkpoint_every=50, resume=True, log_every=1, desc="erasing", extra_report=None):
    """Run the loop; returns the report dict also written to out_path with .json instead of .safetensors."""
    for name, p in params.items():
        if p.dtype != torch.float32:
            raise ValueError(f"trainable tensor {name} is {p.dtype}; keep trained tensors fp32 (Adam drops "
                             "small updates on bf16 weights)")
    names = list(params)
    opt = torch.optim.Adam([params[n] for n in names], lr=lr)
    dtype = PRECISIONS[mixed_precision]
    autocast = torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()
    scaler = torch.amp.GradScaler(enabled=dtype is torch.float16 and str(device).startswith("cuda"))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    state_path = out_path.replace(".safetensors", "") + ".state.safetensors"
    start_it, losses, seconds0 = 0, [], 0.0
    if resume and os.path.exists(state_path):
        start_it, extra = load_state(state_path, {"params": [params[n] for n in names]}, opt)
        losses, seconds0 = extra["losses"], extra["seconds"]
        print(f"resuming from {state_path} at iteration {start_it}")
    rng = np.random.default_rng(seed + start_it)
    torch.manual_seed(seed + start_it)
    t0 = time.time()
    bar = tqdm(range(start_it, iterations), desc=desc, initial=start_it, total=iterations)
    for it in bar:
        with autocast:
            loss = loss_fn(it, rng)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))
        if it % log_every == 0:
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
        if checkpoint_every and (it + 1) % checkpoint_every == 0 and it + 1 < iterations:
            save_state(state_path, {"params": [params[n] for n in names]}, opt, it + 1,
                       {"losses": losses, "seconds": seconds0 + time.time() - t0})
    seconds = seconds0 + time.time() - t0
    n_tensors, n_params = count(params)
    report = {**metadata, "iterations_done": iterations, "train_seconds": round(seconds, 2),
              "seconds_per_iteration": round(seconds / max(1, iterations), 4),
              "peak_memory_mb": round(peak_memory_mb(device), 1), "tensors_changed": n_tensors,
              "parameters_changed": n_params, **(extra_report() if callable(extra_report) else extra_report or {})}
    save_erasure(out_path, params, report)
    write_json(out_path.replace(".safetensors", "") + ".json", {**report, "losses": losses})
    if os.path.exists(state_path):
        os.remove(state_path)
    return {**report, "losses": losses}
