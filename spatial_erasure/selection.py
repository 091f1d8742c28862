"""Which UNet tensors a train method trains (the reference ESD's methods), and how many there are."""
import torch

from .errors import InputError

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
        raise InputError(f"unknown train method {method!r}; choose one of {', '.join(TRAIN_METHODS)}")
    owner = dict(unet.named_modules())
    keep = TRAIN_METHODS[method][1]
    chosen = {n: p for n, p in unet.named_parameters() if keep(n, owner[n.rpartition(".")[0]])}
    if not chosen:
        raise InputError(f"train method {method!r} selects no tensors of this UNet ({type(unet).__name__}); "
                         "pass a diffusers UNet2DConditionModel pipeline as --base_model")
    return chosen


def trains_keys_and_values(method):
    """Whether `method` trains the cross-attention key and value projections (what --preserve_kv keeps)."""
    return TRAIN_METHODS[method][1]("up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                                    torch.nn.Linear(1, 1))


def count(params):
    """(tensors, parameters) in a {name: tensor} dict: say both, they differ by 6 orders of magnitude."""
    return len(params), sum(p.numel() for p in params.values())
