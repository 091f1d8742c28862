"""Resumable training state in safetensors only: model tensors, optimizer moments, step, RNG-free.

Optimizer state is flattened into tensors ("opt.{param_index}.{name}") with the param groups
in the metadata as JSON, so a checkpoint never needs unpickling. Writes go to a unique temporary file
that is renamed when complete, so an interrupted save leaves the previous checkpoint intact.
"""
import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .files import atomic_path


def atomic_save(tensors, path, metadata=None):
    """save_file to a unique temporary name, then rename (files.atomic_path): readers never see half
    a file, and a failed save leaves no temporary behind."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={k: str(v) for k, v in (metadata or {}).items()})


def replace_folder(tmp, folder, keep=("README.md",)):
    """Put the finished folder `tmp` in place of `folder` (an exported pipeline), carrying over the
    hand-written files `keep` of the old one."""
    for name in keep:
        if os.path.exists(os.path.join(folder, name)):
            shutil.copy(os.path.join(folder, name), tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def save_state(path, modules, optimizer=None, step=0, extra=None):
    """modules: dict name -> nn.Module or list of tensors; saved with the optimizer moments and step."""
    tensors = {}
    for name, m in modules.items():
        items = m.state_dict().items() if hasattr(m, "state_dict") else enumerate(m)
        tensors.update({f"{name}.{k}": v for k, v in items})
    meta = {"step": step, "extra": json.dumps(extra or {})}
    if optimizer is not None:
        sd = optimizer.state_dict()
        for idx, st in sd["state"].items():
            tensors.update({f"opt.{idx}.{k}": torch.as_tensor(v) for k, v in st.items()})
        meta["param_groups"] = json.dumps(sd["param_groups"])
    atomic_save(tensors, path, meta)


def load_state(path, modules, optimizer=None):
    """Inverse of save_state; returns (step, extra). Raises if a module's keys do not match."""
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for name, m in modules.items():
        sub = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
        if hasattr(m, "load_state_dict"):
            m.load_state_dict(sub, strict=True)
        else:
            if len(sub) != len(m):
                raise ValueError(f"{path}: {name} has {len(sub)} tensors, expected {len(m)}; it is a checkpoint of "
                                 "another run: delete it (or pass --no-resume where the script has it)")
            for i, t in enumerate(m):
                t.data.copy_(sub[str(i)])
    if optimizer is not None and "param_groups" in meta:
        state = {}
        for k, v in tensors.items():
            if k.startswith("opt."):
                _, idx, key = k.split(".", 2)
                state.setdefault(int(idx), {})[key] = v
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"]), json.loads(meta["extra"])
