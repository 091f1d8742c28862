"""The erasure file: the trained tensors of one erasure and what they were trained on.

An erasure file is a safetensors file with only the trained tensors, fp32, keyed by the UNet's
own parameter names (the reference ESD format), plus metadata: the base model and a fingerprint
of its UNet, the method, the concept and every training argument. `apply_erasure` refuses a
file whose keys, shapes or base model do not match the pipeline it is applied to. Every reader
turns a missing file, a file that is not safetensors (e.g. a pickle renamed .safetensors) or a
safetensors file without erasure metadata into one ErasureFileError line that names the fix.
"""
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .checkpoint import atomic_save
from .errors import InputError
from .families import denoiser_of
from .models import MODELS_DIR, REPO_ROOT, TOY_MODEL, fingerprint

WRITTEN_BY = "pass an erasure file written by original_esd/ or inpainting_erasure/ (see models/)"


class ErasureFileError(InputError):
    """The path is not a readable erasure file (missing, not safetensors, or no erasure metadata)."""


class ErasureMismatch(InputError):
    """The erasure file does not fit this UNet (keys, shapes or base model)."""


def record_base(model):
    """How an erasure file names its base model: a folder inside this repository relative to the
    repository (e.g. "models/toyart-sd", the same in every checkout), anything else (a hub id, a
    folder elsewhere) as given."""
    model = str(model)
    if os.path.isdir(model):
        path = Path(model).resolve()
        if path.is_relative_to(REPO_ROOT):
            return path.relative_to(REPO_ROOT).as_posix()
    return model


def file_name_part(text):
    """A concept or prompt as part of a file name: spaces and slashes as _."""
    return text.strip().replace(" ", "_").replace("/", "_")


def training_metadata(settings, base_fingerprint, concept, erase_from, resolution, **extra):
    """What a trainer records in its erasure file: the base model (record_base) and its UNet
    fingerprint, method, concept, erase_from, `extra` (e.g. the grid algorithm and preset), every
    resolved setting (`settings`: {flag: value}, base_model and train_method among them) and the
    training resolution."""
    base = record_base(settings["base_model"])
    return {"base_model": base, "base_fingerprint": base_fingerprint, "method": settings["train_method"],
            "concept": concept, "erase_from": erase_from, **extra, "args": {**settings, "base_model": base},
            "resolution": resolution}


def recorded_base(meta):
    """The base model an erasure file's metadata names, as a folder or hub id usable here: a folder
    recorded relative to the repository, a hub id as recorded, and for an older file trained in another
    checkout (an absolute path that is not here), the bundled folder of the same name in models/."""
    base = str(meta.get("base_model") or TOY_MODEL)
    if not os.path.isabs(base) and (REPO_ROOT / base).is_dir():
        return str(REPO_ROOT / base)
    if os.path.isabs(base) and not os.path.exists(base) and (MODELS_DIR / os.path.basename(base)).is_dir():
        return str(MODELS_DIR / os.path.basename(base))
    return base


def save_erasure(path, params, metadata):
    """Write {name: tensor} as fp32 safetensors with JSON-encoded metadata, atomically; InputError (and
    nothing written) for a tensor that is not float or holds NaN or Inf, which every reader refuses."""
    wrong = [f"{k} ({v.dtype})" for k, v in params.items() if not v.is_floating_point()]
    bad = [k for k, v in params.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if wrong or bad:
        raise InputError(f"refusing to write {path}: " + (f"{len(wrong)} tensors are not float (e.g. {wrong[0]})"
                         if wrong else f"{len(bad)} tensors hold NaN or Inf (e.g. {bad[0]})")
                         + "; an erasure file holds finite float weights: fix or retrain them first")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    atomic_save({k: v.detach().float() for k, v in params.items()}, path, meta)


@contextmanager
def _opened(path):
    """safe_open(path) with one-line errors for a missing file and for one that is not safetensors."""
    if not os.path.isfile(path):
        raise ErasureFileError(f"erasure file {path} does not exist; {WRITTEN_BY}")
    try:
        with safe_open(path, "pt") as f:
            yield f
    except (SafetensorError, OSError) as e:   # e.g. a pickle: the Rust reader says "header too large"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ErasureFileError(f"{path} is not a safetensors file ({first}); {WRITTEN_BY}") from None


def _decoded(raw):
    """Metadata values decoded from JSON where they are JSON (strings stay strings)."""
    meta = {}
    for k, v in (raw or {}).items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return meta


def read_metadata(path):
    """The metadata of a safetensors file, decoded; ErasureFileError if it is missing or not safetensors."""
    with _opened(path) as f:
        return _decoded(f.metadata())


def file_hash(path):
    """A short hash of an erasure file's bytes: reports record it, so a table can match their rows to
    the very file (not another one of the same name)."""
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def names_by_stem(paths):
    """{file stem: path} of erasure files for a report's rows and image folders; InputError when two
    share a stem (they would overwrite each other's images and rows) or one is named base."""
    names = {os.path.basename(f).removesuffix(".safetensors"): f for f in paths}
    if len(names) < len(paths) or "base" in names:
        raise InputError("two erasure files share a file name (or one is named base); pass each file once, "
                         "renamed if needed")
    return names


def read_erasure(path):
    """(tensors, metadata) of an erasure file; ErasureFileError for anything that is not one."""
    with _opened(path) as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = _decoded(f.metadata())
    if "method" not in meta and "base_fingerprint" not in meta:
        raise ErasureFileError(f"{path} is not an erasure file (no method or base_fingerprint metadata); {WRITTEN_BY}")
    if not tensors:
        raise ErasureFileError(f"{path} holds no tensors; {WRITTEN_BY}")
    wrong = [f"{k} ({v.dtype})" for k, v in tensors.items() if not v.is_floating_point()]
    if wrong:
        raise ErasureFileError(f"{path} holds non-float tensors, e.g. {wrong[0]}; an erasure file holds float UNet "
                               f"weights; {WRITTEN_BY}")
    bad = [k for k, v in tensors.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise ErasureFileError(f"{path} holds NaN or Inf in {len(bad)} tensors (e.g. {bad[0]}): its training "
                               "diverged; retrain it with a lower --lr")
    return tensors, meta


def latest_erasure(concept, folder=MODELS_DIR, text2img=True):
    """The newest erasure file (by modification time, then name) in `folder` whose metadata names
    `concept`; with text2img, only files trained on a text-to-image (4-channel) UNet. None if none.
    A *.safetensors file there that is not safetensors at all is an ErasureFileError."""
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".safetensors") and os.path.isfile(path):
            meta = read_metadata(path)
            if meta.get("concept") == concept and not (text2img and meta.get("unet_in_channels") == 9):
                found.append((os.path.getmtime(path), name, path))
    return max(found)[2] if found else None


def check_fits(tensors, own, name="the erasure file", base=None):
    """ErasureMismatch unless every tensor of an erasure file names a tensor of `own` ({name: tensor},
    the UNet's) of the same shape."""
    missing = [k for k in tensors if k not in own]
    wrong = [f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}" for k in tensors
             if k in own and own[k].shape != tensors[k].shape]
    if missing or wrong:
        raise ErasureMismatch(f"{name} does not fit this UNet: {len(missing)} unknown keys {missing[:3]}, "
                              f"{len(wrong)} shape mismatches {wrong[:3]}; pass the --base_model it was trained on"
                              + (f" ({base})" if base else ""))


def check_recorded_base(path, meta, allow_unverified=False, fix="pass --allow_unverified"):
    """ErasureMismatch for a file that records no base fingerprint (nothing says which model it was
    trained on), unless allow_unverified (the scripts' --allow_unverified; `fix` names it)."""
    if "base_fingerprint" not in meta and not allow_unverified:
        raise ErasureMismatch(f"{path} records no base_fingerprint, so nothing says which model it was trained on; "
                              f"{fix} to use it anyway")


def apply_erasure(pipe, path, check_base=True, allow_unverified=False):
    """Load the trained tensors of `path` into pipe.unet in place; returns the file's metadata.

    Every key must name a UNet parameter of the same shape, and (unless check_base=False) the
    UNet's fingerprint must equal the one recorded at training time; a file that records none is
    refused unless allow_unverified.
    """
    tensors, meta = read_erasure(path)
    return apply_tensors(pipe, tensors, meta, path, check_base, allow_unverified)


# How a mismatch is fixed, by who asked, (another base model, no fingerprint): a script's flags, or the
# Python API's objects and keywords.
SCRIPT_FIX = ("pass the matching --base_model", "pass --allow_unverified")
API_FIX = ("load it onto that model (spatial_erasure.load_pipeline(base_model))", "pass allow_unverified=True")


def apply_tensors(pipe, tensors, meta, name, check_base=True, allow_unverified=False, fix=SCRIPT_FIX):
    """apply_erasure of tensors and metadata already read (`name`: the file, or "this Erasure", in the
    messages; `fix`: what the caller should do about a model mismatch)."""
    if check_base:
        check_recorded_base(name, meta, allow_unverified, fix[1])
    if check_base and "base_fingerprint" in meta:
        have = fingerprint(denoiser_of(pipe))
        if have != meta["base_fingerprint"]:
            raise ErasureMismatch(
                f"{name} was trained on {meta.get('base_model', '?')} (UNet fingerprint {meta['base_fingerprint']}) "
                f"but the pipeline is {pipe.name_or_path} (fingerprint {have}); {fix[0]}")
    own = dict(denoiser_of(pipe).named_parameters())
    check_fits(tensors, own, name, meta.get("base_model", "see its metadata"))
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(own[k].dtype))
    return meta


@contextmanager
def erased(pipe, path):
    """`with erased(pipe, path) as meta:` the pipeline with the erasure applied, restored afterwards
    (only the file's tensors are saved and put back: no second copy of the UNet)."""
    tensors, meta = read_erasure(path)
    with erased_by(pipe, tensors, meta, path) as meta:
        yield meta


@contextmanager
def erased_by(pipe, tensors, meta, name, fix=SCRIPT_FIX):
    """erased() of tensors and metadata already read (apply_tensors' `name` and `fix`)."""
    own = dict(denoiser_of(pipe).named_parameters())
    saved = {k: own[k].detach().clone() for k in tensors if k in own}
    try:
        yield apply_tensors(pipe, tensors, meta, name, fix=fix)
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                own[k].copy_(v)
