"""Model families: one module each, saying everything that differs between them.

    family = family_of(pipe)              # the family of a loaded pipeline (by its denoiser)
    family, cls = declared_family(model)  # from model_index.json, before any weight loads
    family.encode(pipe, prompts)          # Cond: the denoiser's conditioning
    family.TRAIN_METHODS                  # {name: (description, predicate(param name, module))}
    family.kohya_module(m, config), family.base_version(denoiser)   # export names and metadata

Each module has KEY, NAME, PIPELINE_PREFIXES (the model_index.json class names it owns), DENOISER
(the pipeline component it trains), PREDICTS, owns(denoiser), architecture(denoiser), encode,
TRAIN_METHODS, KEY_VALUE (the text-to-key/value projections' names) and PROBE, kohya_module,
base_version; the flow families (sd3, flux) also predict(denoiser, x, t, cond, params), the velocity.
A new base model is one file here and one entry in FAMILIES.
"""
from . import flux, sd, sd3, sdxl

FAMILIES = {f.KEY: f for f in (sdxl, sd, sd3, flux)}    # the registry (SDXL before SD: both are UNets)


class UnknownFamily(ValueError):
    """A pipeline no family recognises."""


def family_of(pipe):
    """The family module of a loaded pipeline (the family that owns its denoiser); UnknownFamily if none."""
    for family in FAMILIES.values():
        if family.owns(getattr(pipe, family.DENOISER, None)):
            return family
    raise UnknownFamily(f"{type(pipe).__name__} is not a pipeline of a family this toolkit knows "
                        f"({', '.join(f.NAME for f in FAMILIES.values())})")


def denoiser_of(pipe):
    """The pipeline's denoiser, the component its family trains: pipe.unet or pipe.transformer."""
    return getattr(pipe, family_of(pipe).DENOISER)


def family_of_denoiser(denoiser):
    """The family module that owns a denoiser (a UNet or a transformer); UnknownFamily if none."""
    for family in FAMILIES.values():
        if family.owns(denoiser):
            return family
    raise UnknownFamily(f"{type(denoiser).__name__} is not the denoiser of a family this toolkit knows")


def declared_family(model):
    """(family module, pipeline class name) that `model`'s model_index.json declares, read without
    loading weights; (None, class name or None) when no family owns it or it cannot be read here."""
    from diffusers import DiffusionPipeline
    try:
        name = DiffusionPipeline.load_config(str(model))["_class_name"]
    except Exception:                              # no hub, no folder, no index: the load says which
        return None, None
    for family in FAMILIES.values():
        if name.startswith(family.PIPELINE_PREFIXES):
            return family, name
    return None, name
