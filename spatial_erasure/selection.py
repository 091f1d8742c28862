"""Which UNet tensors a train method trains (the reference ESD's methods), and how many there are."""
import torch

from .errors import InputError
from .families import FAMILIES, family_of_denoiser, sd

# name -> (description, predicate): the CLI's choices, every family's methods (described as the UNet
# families' where they share a name; each family's own table says what it selects: spatial_erasure.families)
TRAIN_METHODS = dict(sd.TRAIN_METHODS)
for _family in FAMILIES.values():
    for _name, (_about, _keep) in _family.TRAIN_METHODS.items():
        TRAIN_METHODS.setdefault(_name, (f"{_family.NAME}: {_about}", _keep))


def select_parameters(unet, method):
    """{name: parameter} trained by `method`; a clear error for unknown methods or empty selections."""
    methods = family_of_denoiser(unet).TRAIN_METHODS
    if method not in methods:
        raise InputError(f"unknown train method {method!r}; choose one of {', '.join(methods)}")
    owner = dict(unet.named_modules())
    keep = methods[method][1]
    chosen = {n: p for n, p in unet.named_parameters() if keep(n, owner[n.rpartition(".")[0]])}
    if not chosen:
        raise InputError(f"train method {method!r} selects no tensors of this denoiser ({type(unet).__name__}); "
                         "pass a pipeline of a family this toolkit knows as --base_model")
    return chosen


def trains_keys_and_values(method, family=None):
    """Whether `method` trains the text tokens' key and value projections (what --preserve_kv keeps):
    asked of the family's table with a name of its own key projection. Without a family (at parse time,
    before the model loads): SD's table, or the first family's that has the method (esd-x-text: SD3's)."""
    family = family or next(f for f in (sd, *FAMILIES.values()) if method in f.TRAIN_METHODS)
    probe = family.PROBE + family.KEY_VALUE[0] + "weight"
    return family.TRAIN_METHODS[method][1](probe, torch.nn.Linear(1, 1))


def count(params):
    """(tensors, parameters) in a {name: tensor} dict: say both, they differ by 6 orders of magnitude."""
    return len(params), sum(p.numel() for p in params.values())
