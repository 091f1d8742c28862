"""One way to load a model: a hub id or a local folder in, a diffusers pipeline out.

The bundled toy model (`models/toyart-sd`) and real Stable Diffusion go through the same call:

    pipe = load_pipeline("CompVis/stable-diffusion-v1-4")      # needs the model hub
    pipe = load_pipeline(TOY_MODEL)                             # offline, 20 MB, CPU-friendly

Supported: SD 1.x/2.x (4-channel UNet), SD-inpainting (9-channel UNet), SDXL.
"""
import hashlib
import os
from pathlib import Path

import torch
from diffusers import (DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                       StableDiffusionXLInpaintPipeline, StableDiffusionXLPipeline)
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from .conditioning import TEXT_LENGTH_KEY
from .families import UnknownFamily, family_of, family_of_denoiser

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"
TOY_MODEL = str(MODELS_DIR / "toyart-sd")
TOY_INPAINTING = str(MODELS_DIR / "toyart-sd-inpainting")   # the toy model with a 9-channel inpainting UNet
# How to turn a folder of pickle (.bin) weights into one this toolkit loads: it never unpickles them itself.
SAFETENSORS_FIX = ("a folder with only .bin weights: convert it once, where you trust it, by loading it with "
                   "diffusers and calling save_pretrained(new_folder, safe_serialization=True)")
TOY_CLASSIFIER = str(MODELS_DIR / "toyart-classifier")
# The bundled Van Gogh erasures of the 4-channel toy model: ESD-x and scaled grid, each as --recipe paper and
# recommended.
BUNDLED_ERASURES = [str(MODELS_DIR / f"{stem}{suffix}.safetensors")
                    for stem in ("esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x",
                                 "grid-Vincent_van_Gogh-scaled-esd-x")
                    for suffix in ("", "-recommended")]

# (architecture, task) -> pipeline class; task "inpaint" on a 4-channel UNet is the blended loop
PIPELINES = {("sd", "text2img"): StableDiffusionPipeline, ("sd", "inpaint"): StableDiffusionInpaintPipeline,
             ("sd-inpaint", "inpaint"): StableDiffusionInpaintPipeline,
             ("sd-inpaint", "text2img"): StableDiffusionInpaintPipeline,
             ("sdxl", "text2img"): StableDiffusionXLPipeline, ("sdxl", "inpaint"): StableDiffusionXLInpaintPipeline,
             ("sdxl-inpaint", "inpaint"): StableDiffusionXLInpaintPipeline,
             ("sdxl-inpaint", "text2img"): StableDiffusionXLInpaintPipeline}


class ModelLoadError(SystemExit):
    """A one-line, actionable failure to load a model (exits non-zero when uncaught)."""


def hub_unreachable(model, error, what=""):
    """The ModelLoadError for a hub id that could not be fetched: how to use it offline."""
    return ModelLoadError(f"could not load {what}'{model}' from the model hub ({type(error).__name__}); download it "
                          "where the hub is reachable (huggingface-cli download ID --local-dir FOLDER) and pass "
                          "--base_model FOLDER")


def architecture(unet):
    """'sd', 'sd-inpaint' (9 input channels: latent, mask, masked-image latent), 'sdxl' or 'sdxl-inpaint':
    the model family's (spatial_erasure.families)."""
    return family_of_denoiser(unet).architecture(unet)


def _index(model):
    """model_index.json of a folder or hub id, read once without weights; None when it cannot be read
    (from_pretrained then reports the real problem)."""
    try:
        return DiffusionPipeline.load_config(model)
    except Exception:
        return None


def absent_components(model, index=None):
    """{component: None} for the components model_index.json records as absent ([null, null], e.g. SD3's
    text_encoder_3 without T5), which from_pretrained would otherwise insist on."""
    index = _index(model) if index is None else index
    return {k: None for k, v in (index or {}).items() if isinstance(v, list) and v and all(x is None for x in v)}


def _no_safety_checker(model, index):
    """Skip SD 1.x's NSFW checker (evaluations need raw outputs); SDXL pipelines have none to skip."""
    has = "safety_checker" in index if index is not None else "xl" not in model.lower()
    return {"safety_checker": None, "requires_safety_checker": False} if has else {}


def load_pipeline(model=TOY_MODEL, task="text2img", device="cpu", dtype=torch.float32, quiet=True):
    """Load `model` (hub id or local pipeline folder) as the diffusers pipeline for `task`.

    task: "text2img" or "inpaint" (4-channel UNets inpaint by blending latents outside the mask).
    Raises ModelLoadError with one line saying what to do when the folder or hub id can't be used.
    """
    model = str(model)
    local = os.path.isdir(model)
    if local and not os.path.exists(os.path.join(model, "model_index.json")):
        raise ModelLoadError(f"{model} is a folder but not a diffusers pipeline (no model_index.json); "
                             "pass a folder written by save_pretrained or a hub id")
    if not local and (model.startswith((".", "/", "~")) or os.sep + os.sep in model or model.count("/") != 1):
        raise ModelLoadError(f"model folder {model} does not exist; pass an existing pipeline folder or a hub "
                             "id such as CompVis/stable-diffusion-v1-4")
    if task not in ("text2img", "inpaint"):
        raise ValueError(f"task must be 'text2img' or 'inpaint', not {task!r}")
    if quiet:   # scripts show their own bars; loading bars of every component are noise
        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    index = _index(model)
    try:
        # the auto class from model_index.json, then the class the task needs, sharing components
        skipped = {**absent_components(model, index), **_no_safety_checker(model, index)}   # components left out
        pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype, use_safetensors=True, **skipped)
    except (OSError, ValueError) as e:
        if local:
            raise ModelLoadError(f"could not load the pipeline in {model}: {str(e).splitlines()[0]}; pass a folder "
                                 f"written by save_pretrained (safetensors) or a hub id ({SAFETENSORS_FIX})") from e
        raise hub_unreachable(model, e) from e
    try:
        family = family_of(pipe)
    except UnknownFamily as e:
        raise ModelLoadError(f"{model}: {e}; pass one of those") from None
    denoiser = getattr(pipe, family.DENOISER)
    cls = PIPELINES.get((family.architecture(denoiser), task)) if family.INPAINTS else \
        type(pipe) if task == "text2img" else None
    if cls is None:
        raise ModelLoadError(f"{model} is a {family.architecture(denoiser)} pipeline, which this toolkit cannot use "
                             f"for {task}; pass an SD 1.x/2.x, SD-inpainting or SDXL pipeline")
    if type(pipe) is not cls:
        level = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()    # from_pipe warns about an empty list of fp32 modules
        pipe = cls.from_pipe(pipe)
        diffusers_logging.set_verbosity(level)
    if TEXT_LENGTH_KEY in (index or {}):   # e.g. the toy SD3's T5 length; from_pretrained drops private keys
        pipe.register_to_config(**{TEXT_LENGTH_KEY: index[TEXT_LENGTH_KEY]})
    pipe = pipe.to(device)
    if quiet:
        pipe.set_progress_bar_config(disable=True)
    return pipe


def describe(pipe, fp=None):
    """One line naming the model a script uses: where from, architecture, UNet size, fingerprint
    (pass `fp` when it is already computed: hashing an 860M-parameter UNet is not free)."""
    family = family_of(pipe)
    denoiser = getattr(pipe, family.DENOISER)
    n = sum(p.numel() for p in denoiser.parameters())
    kind, fp = "UNet" if family.DENOISER == "unet" else "transformer", fp or fingerprint(denoiser)
    return (f"model: {pipe.name_or_path} ({family.architecture(denoiser)}, {kind} "
            f"{n / 1e6:.1f}M parameters, {family.native_resolution(pipe)}px, fingerprint {fp})")


@torch.no_grad()
def fingerprint(unet):
    """A short hash of the UNet's (or any module's) weights: names, shapes and a few statistics of every tensor.

    Cheap on an 860M-parameter UNet (no full byte hash) yet different for any two trained models;
    erasure files record it so they can refuse to be applied to another base model.
    """
    h = hashlib.sha256()
    for name, t in sorted(unet.state_dict().items()):
        # fp16-rounded values summed in float64: the same for fp32 and fp16 loads, on CPU or GPU
        flat = t.detach().half().double().flatten()
        stats = torch.stack([flat.sum(), flat.abs().sum(), flat[:: max(1, len(flat) // 64)][:64].sum()])
        h.update(f"{name}{tuple(t.shape)}{[float(f'{v:.6g}') for v in stats.tolist()]}".encode())
    return h.hexdigest()[:16]
