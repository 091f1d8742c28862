r"""Image generation split across processes under `accelerate launch`, merged in order.

    images = map_batches(lambda sl: run_pipe(prompts[sl], seeds[sl]), len(prompts), batch_size=32)

The jobs are cut into the batches one process would run, the list of batches is split into
contiguous shards (PartialState.split_between_processes), each process runs its shard and the
shards are gathered: every process returns the full array in the original order, so code after a
generation call needs no change; only writing files is left to the main process
(`process_state().is_main_process`). Whole batches, not single images, are shared out because a
batch's composition changes float rounding on CPU (up to 1/255 on a few pixels), so identical
batches are what make a multi-process run give exactly a single-process run's images.

Launch (a plain `python script.py` is one process and behaves exactly as before):
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no \
        --dynamo_backend no SCRIPT ARGS
one process per GPU; without CUDA the same command starts 2 CPU processes (gloo backend), as does
    python -m torch.distributed.run --nproc_per_node 2 SCRIPT ARGS
(`accelerate launch --cpu --num_processes 2` starts one process, not two.)
"""
import platform

import numpy as np

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm import tqdm

from .errors import InputError


def process_state():
    """accelerate's PartialState (a singleton). cpu=True without CUDA, else a CPU-only launch
    with --multi_gpu would give every process every job."""
    return PartialState(cpu=not torch.cuda.is_available())


def end_processes():
    """After a script's work under `accelerate launch`: wait for every process, then tear the process
    group down. Left to interpreter exit, a finished process could abort in gloo's teardown
    ("terminate called without an active exception", SIGABRT) and fail the launch (seen once in CI)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def machine_name():
    """What a report says ran it: the GPU's name, else the CPU and the threads torch uses."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def check_device(device):
    """InputError in one line for a --device torch does not know or this machine does not have; None
    (the default) is always fine."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {device} is not a torch device; pass cpu, cuda or cuda:N (or leave --device "
                         "out)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: torch sees no CUDA GPU on this machine; pass --device cpu (or leave "
                         "--device out)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s); pass "
                         "cuda:0 or cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"--device {device}: MPS is not available here; pass --device cpu (or leave --device out)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"--device {device}: this toolkit runs on cpu, cuda or mps; pass one of them")


def process_device(device=None):
    """The torch device for this process: "cuda" (or None, when CUDA is available) becomes this
    process's own GPU; anything else is returned as given; None without CUDA is "cpu". InputError
    for a device that does not exist here (check_device)."""
    check_device(device)
    if device in (None, "cuda") and torch.cuda.is_available():
        return process_state().device
    return device or "cpu"


def map_batches(fn, n, batch_size, desc=None):
    """fn(slice) -> array for jobs [slice] (at most batch_size). Returns the concatenation over all n
    jobs, in order, on every process; each process runs a contiguous share of the batches."""
    state = process_state()
    batches = [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    with state.split_between_processes(batches) as mine:
        out = [fn(b) for b in tqdm(mine, desc=desc, disable=desc is None or len(mine) < 2
                                   or not state.is_local_main_process)]
    return np.concatenate(gather_object(out))   # every process's batches, in process order (1 process: as is)
