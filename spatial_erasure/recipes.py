"""Named recipes of the two trainers, as data, and the one place their settings are resolved.

    flags = vars(parser.parse_args())         # every setting a recipe may set is None unless given
    resolve(flags, "esd")                     # at parse: the recipe's settings, then the preset's sizes
    resolve(flags, "esd", family="toy")       # after loading the model: the model family's lr and eta

A flag the user gives always wins. Otherwise, first found: the recipe's values for this preset, the
recipe's values for this model family, the recipe's values, the preset's sizes (grid erasure), the
model family's defaults. `paper` reproduces the reference ESD (Gandikota et al. 2023, the
reference repository's code and values) and grid erasure as this project first published it: the
bundled reference files. `recommended`, the default, is the best-measured combination on the toy
model (docs/twin.md#recipes); real-size values that were not measured
are the reference's and say so.
"""
from dataclasses import dataclass, field

from .errors import InputError

FAMILIES = {"toy": "the bundled toy world's UNets", "toy-sd3": "the toy world's SD3", "sd": "SD 1.x / 2.x and "
            "SD-inpainting", "sdxl": "SDXL", "sd3": "SD3 / SD3.5", "flux": "Flux.1"}


@dataclass(frozen=True)
class Recipe:
    about: str
    values: dict                                     # settings for every model family and preset
    family: dict = field(default_factory=dict)       # {family: settings}, over `values`
    presets: dict = field(default_factory=dict)      # {preset: settings}, over both (grid erasure)


# The model families' learning rate and negative guidance (and grid erasure's loss weights): the toy
# model's were measured (docs/results.md), SD's and SDXL's are the reference ESD code's.
ESD_FAMILY = {"toy": dict(lr=7e-4, negative_guidance=4.0), "sd": dict(lr=5e-5, negative_guidance=2.0),
              "sdxl": dict(lr=2e-4, negative_guidance=1.0),
              # not measured at real size: the esd_flux forks' lr 1e-4 and eta 2 (docs/flow.md)
              "sd3": dict(lr=1e-4, negative_guidance=2.0), "flux": dict(lr=1e-4, negative_guidance=2.0)}
ESD_FAMILY["toy-sd3"] = ESD_FAMILY["toy"]         # the toy SD's; only its recipe's iterations differ
# retain_templates: phrasings of each retain style, as first published (worlds.World.retain_phrasings reads it).
GRID_FAMILY = {"toy": dict(lr=7e-4, negative_guidance=4.0, outside_weight=1.0, retain_weight=1.0, retain_templates=1),
               "sd": dict(lr=5e-5, negative_guidance=2.0, outside_weight=1.0, retain_weight=1.0, retain_templates=2)}
GRID_FAMILY["sdxl"] = GRID_FAMILY["sd"]
# The scaled preset's 500 iterations at 7e-4 overshoot on the toy model (subjects 62%), so 3e-4 (docs/results.md).
PRESET_LR = {("toy", "scaled"): 3e-4}
# The ESD target on a stream of trajectories needs a lower lr than on sampled x_t: 4e-4 against 7e-4
# on the toy model (docs/real_size.md); real-size families take the same ratio (not measured there).
STREAM_LR_SCALE = 4e-4 / 7e-4
# Grid erasure's sizes: prompt variations x masks, iterations, banks of cache/noise x_t.
PRESETS = {"basic": dict(num_prompts=5, iterations=10, bank_size=16, retain_bank_size=4),
           "efficient": dict(num_prompts=20, iterations=100, bank_size=64, retain_bank_size=16),
           "scaled": dict(num_prompts=100, iterations=500, bank_size=256, retain_bank_size=64)}

RECIPES = {
    "esd": {
        "paper": Recipe("the reference ESD: x_t sampled, ESD's target on the concept prompt alone, no preservation",
                        dict(target="esd", xt_source="sample", variations=0, preserve=0, robust=False,
                             twin_map=False, iterations=200)),
        "recommended": Recipe(
            "the concept mapped onto its neutral twin on the twins' streamed trajectories, over prompt variations, "
            "with the key/value penalty of 200 anchors (400 iterations: 200 left Monet at 24%)",
            dict(target="twin", negative_guidance=0.0, xt_source="stream", preserve=200, robust=False, twin_map=False,
                 iterations=400),
            # the toy SD3 (esd-x-strict, no key/value penalty): 800 iterations took Van Gogh from 12% to 6%;
            # 2x the lr, anchors' rows, 100 variations or eta 1 cost more subjects (docs/flow.md)
            family={"toy": dict(variations=30), "toy-sd3": dict(variations=30, iterations=800),
                    "sd": dict(variations=100), "sdxl": dict(variations=100),
                    "sd3": dict(variations=100), "flux": dict(variations=100)}),
    },
    "grid": {
        "paper": Recipe("grid erasure as first published: ESD's target inside the mask on the concept's own x_t "
                        "(sampled; a cached bank for scaled)",
                        dict(target="esd", direction="null", preserve=0, robust=False),
                        presets={"basic": dict(xt_source="sample"), "efficient": dict(xt_source="sample"),
                                 "scaled": dict(xt_source="cache")}),
        "recommended": Recipe(
            "the twin's prediction inside the mask on the twins' streamed inpainting trajectories, \"\" kept, "
            "with the key/value penalty of 200 anchors",
            dict(target="twin", direction="null", negative_guidance=0.0, preserve=200, robust=False,
                 xt_source="stream"),
            presets={"scaled": dict(iterations=1000)}),
    },
}
DEFAULT = "recommended"


def family_defaults(trainer, family, preset=None):
    """The model family's lr and negative guidance (and grid erasure's weights) for this preset."""
    out = dict((ESD_FAMILY if trainer == "esd" else GRID_FAMILY)[family])
    if (family, preset) in PRESET_LR:
        out["lr"] = PRESET_LR[family, preset]
    return out


def settings(trainer, recipe, family=None, preset=None):
    """Every setting `recipe` gives, in resolution order (a later one wins): the family defaults (only
    with `family`), the preset's sizes, the recipe's values, its family's values, its preset's values."""
    if recipe not in RECIPES[trainer]:
        raise InputError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES[trainer])}")
    r = RECIPES[trainer][recipe]
    # without the family (at parse), a value some family overrides stays unset until the model loads
    values = r.values if family else {k: v for k, v in r.values.items() if not any(k in d for d in r.family.values())}
    return {**(family_defaults(trainer, family, preset) if family else {}), **PRESETS.get(preset, {}), **values,
            **(r.family.get(family, {}) if family else {}), **r.presets.get(preset, {})}


def resolve(flags, trainer, family=None):
    """Fill every setting of `flags` ({flag: value}, changed in place) left at None from `settings` (at
    parse: without the family; after loading the model: with it, and an lr not given is scaled by
    STREAM_LR_SCALE for ESD's target on a stream). Returns flags."""
    preset = flags.get("preset")
    scale = trainer == "esd" and family is not None and flags.get("lr") is None and flags.get("target") == "esd" \
        and flags.get("xt_source") == "stream" and "lr" not in settings(trainer, flags["recipe"], None, preset)
    for key, value in settings(trainer, flags["recipe"], family, preset).items():
        if flags.get(key) is None:
            flags[key] = value
    if scale:
        flags["lr"] = flags["lr"] * STREAM_LR_SCALE
    return flags


def describe(trainer):
    """One line per recipe for --help: what it is and what it sets."""
    lines = []
    for name, r in RECIPES[trainer].items():
        sets = ", ".join(f"{k} {v}" for k, v in r.values.items())
        fam = "; ".join(f"{f}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for f, d in r.family.items() if d)
        pre = "; ".join(f"{p}: " + ", ".join(f"{k} {v}" for k, v in d.items()) for p, d in r.presets.items())
        lines.append(f"{name}: {r.about} ({sets}" + (f"; {fam}" if fam else "") + (f"; presets {pre}" if pre else "")
                     + ")")
    return " | ".join(lines).replace("%", "%%")  # argparse expands % in help strings
