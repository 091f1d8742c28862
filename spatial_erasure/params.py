"""Which UNet tensors a method trains, and the erasure file that holds them.

An erasure file is a safetensors file with only the trained tensors, fp32, keyed by the UNet's
own parameter names (the reference ESD format), plus metadata: the base model and a fingerprint
of its UNet, the method, the concept and every training argument. `apply_erasure` refuses a
file whose keys, shapes or base model do not match the pipeline it is applied to.
"""
import json
import os
from contextlib import contextmanager

import torch
from safetensors import safe_open

from .checkpoint import atomic_save
from .models import MODELS_DIR, TOY_MODEL, fingerprint

# name -> (description, predicate on (parameter name, owning module)); the CLI's choices come from here
TRAIN_METHODS = {
    "esd-x": ("every Linear weight and bias of cross-attention (attn2)",
              lambda name, mod: ".attn2." in f".{name}" and isinstance(mod, torch.nn.Linear)),
    "esd-x-strict": ("cross-attention key and value projections (attn2.to_k, attn2.to_v)",
                     lambda name, mod: ".attn2.to_k." in f".{name}" or ".attn2.to_v." in f".{name}"),
    "esd-u": ("every parameter outside cross-attention", lambda name, mod: ".attn2." not in f".{name}"),
    "esd-all": ("every UNet parameter", lambda name, mod: True),
}


def select_parameters(unet, method):
    """{name: parameter} trained by `method`; a clear error for unknown methods or empty selections."""
    if method not in TRAIN_METHODS:
        raise ValueError(f"unknown train method {method!r}; choose one of {', '.join(TRAIN_METHODS)}")
    owner = dict(unet.named_modules())
    keep = TRAIN_METHODS[method][1]
    chosen = {n: p for n, p in unet.named_parameters() if keep(n, owner[n.rpartition(".")[0]])}
    if not chosen:
        raise ValueError(f"train method {method!r} selects no tensors of this UNet "
                         f"({type(unet).__name__}); is it a diffusers UNet2DConditionModel?")
    return chosen


def count(params):
    """(tensors, parameters) in a {name: tensor} dict: say both, they differ by 6 orders of magnitude."""
    return len(params), sum(p.numel() for p in params.values())


def save_erasure(path, params, metadata):
    """Write {name: tensor} as fp32 safetensors with JSON-encoded metadata, atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_save({k: v.detach().float() for k, v in params.items()}, path, meta)


def read_erasure(path):
    """(tensors, metadata) of an erasure file; metadata values decoded from JSON where possible."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"erasure file {path} does not exist; pass a .safetensors file written by "
                                "the training scripts (see models/)")
    with safe_open(path, "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        raw = f.metadata() or {}
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return tensors, meta


def recorded_base(meta):
    """The base model an erasure file's metadata names: its hub id or folder, or, for a file trained in
    another checkout (absolute path that is not here), the bundled folder of the same name in models/."""
    base = str(meta.get("base_model") or TOY_MODEL)
    if os.path.isabs(base) and not os.path.exists(base) and (MODELS_DIR / os.path.basename(base)).is_dir():
        return str(MODELS_DIR / os.path.basename(base))
    return base


def latest_erasure(concept, folder=MODELS_DIR, text2img=True):
    """The newest erasure file (by modification time, then name) in `folder` whose metadata names
    `concept`; with text2img, only files trained on a text-to-image (4-channel) UNet. None if none."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors") and os.path.isfile(path):
            with safe_open(path, "pt") as f:
                meta = f.metadata() or {}
            if meta.get("concept", "").strip('"') == concept and not (text2img and meta.get("unet_in_channels") == "9"):
                found.append((os.path.getmtime(path), name, path))
    return max(found)[2] if found else None


class ErasureMismatch(ValueError):
    """The erasure file does not fit this UNet (keys, shapes or base model)."""


def apply_erasure(pipe, path, check_base=True):
    """Load the trained tensors of `path` into pipe.unet in place; returns the file's metadata.

    Every key must name a UNet parameter of the same shape, and (unless check_base=False) the
    UNet's fingerprint must equal the one recorded at training time.
    """
    tensors, meta = read_erasure(path)
    if check_base and "base_fingerprint" in meta:
        have = fingerprint(pipe.unet)
        if have != meta["base_fingerprint"]:
            raise ErasureMismatch(
                f"{path} was trained on {meta.get('base_model', '?')} (UNet fingerprint {meta['base_fingerprint']}) "
                f"but the pipeline is {pipe.name_or_path} (fingerprint {have}); pass the matching --base_model")
    own = dict(pipe.unet.named_parameters())
    missing = [k for k in tensors if k not in own]
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in tensors
             if k in own and own[k].shape != tensors[k].shape]
    if missing or wrong:
        raise ErasureMismatch(f"{path} does not fit this UNet: {len(missing)} unknown keys "
                              f"{missing[:3]}, {len(wrong)} shape mismatches {wrong[:3]}")
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(own[k].dtype))
    return meta


@contextmanager
def erased(pipe, path):
    """`with erased(pipe, path) as meta:` the pipeline with the erasure applied, restored afterwards
    (only the file's tensors are saved and put back: no second copy of the UNet)."""
    keys = read_erasure(path)[0].keys()
    own = dict(pipe.unet.named_parameters())
    saved = {k: own[k].detach().clone() for k in keys if k in own}
    try:
        yield apply_erasure(pipe, path)
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                own[k].copy_(v)
