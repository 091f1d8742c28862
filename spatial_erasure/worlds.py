"""The two worlds a pipeline can belong to: the bundled toy art world and real Stable Diffusion.

    world = world_of(pipe)                                  # TOY for the toy world's models, else REAL
    rows = concept_variations(concept, 30, world, seed)     # prompts.py, attacks/prompt_sets.py take a World
    steps, guidance = sampling_defaults(world, steps, guidance)

A `World` holds what differs between them, as data: the concept variations' templates and
subjects; the retain term's styles (each with its phrasings), subjects and number of phrasings as
first published; the sampling defaults; the attack prompt sets' other artists and famous works; the
concept-impact prompt files. The vocabularies stay in toyart/world.py, prompts.py and sampling.py:
a World only picks among them. The trainers' per-family defaults (lr, negative guidance) are
recipes.py's, keyed by training_flags.model_family.
"""
from dataclasses import dataclass

from .prompts import REAL_FAMOUS_WORKS, REAL_RETAIN, REAL_SUBJECTS, REAL_TEMPLATES, TOY_TEMPLATES, is_toy
from .recipes import GRID_FAMILY
from .sampling import REAL_GUIDANCE, REAL_STEPS, TOY_GUIDANCE, TOY_STEPS
from .toyart.world import (ARTIST_TEMPLATES, ARTISTS, FAMOUS_WORKS, GENERIC_STYLES, GENERIC_TEMPLATES, SUBJECTS,
                           style_prompt)


@dataclass(frozen=True, eq=False)
class World:
    name: str                 # "toy" or "real"
    templates: list           # (prompt with {concept}, its neutral twin) pairs of the concept variations
    subjects: list            # the concept variations' subjects
    retain_styles: dict       # {retain artist or style: its phrasings, {subject} left open}, in order
    retain_subjects: list     # the retain prompts' subjects, also the attack prompts'
    retain_phrasings: int     # phrasings per retain style as first published (recipes.GRID_FAMILY)
    steps: int                # sampling defaults (sampling.sampling_defaults)
    guidance: float
    mix_artists: list         # the artists the mixed attack pairs the concept with (the concept left out)
    famous_works: dict        # {artist: [(title, subject or None: not checked)]}, the famous-work attack
    pair_subjects: bool       # concept pairs name their subject (the judge checks it)
    csv_prefix: str           # the concept-impact prompt CSVs: prompts/{csv_prefix}vangogh.csv, ...
    lpips: bool               # LPIPS between base and erased images (concept impact): real-size images only


TOY = World(
    name="toy", templates=TOY_TEMPLATES, subjects=SUBJECTS,
    retain_styles={a: [style_prompt(a, "{subject}", t) for t in ARTIST_TEMPLATES] for a in ARTISTS}
    | {g: [style_prompt(g, "{subject}", t) for t in GENERIC_TEMPLATES] for g in GENERIC_STYLES},
    retain_subjects=SUBJECTS, retain_phrasings=GRID_FAMILY["toy"]["retain_templates"], steps=TOY_STEPS,
    guidance=TOY_GUIDANCE, mix_artists=ARTISTS,
    famous_works={a: [(w, s) for w, (b, s) in FAMOUS_WORKS.items() if b == a] for a in ARTISTS},
    pair_subjects=True, csv_prefix="toy_", lpips=False)

REAL = World(
    name="real", templates=REAL_TEMPLATES, subjects=REAL_SUBJECTS,
    retain_styles={a: [t.format(subject="{subject}", concept=a) for t, _ in REAL_TEMPLATES] for a in REAL_RETAIN},
    retain_subjects=REAL_SUBJECTS[:6], retain_phrasings=GRID_FAMILY["sd"]["retain_templates"], steps=REAL_STEPS,
    guidance=REAL_GUIDANCE,
    mix_artists=REAL_RETAIN[:5],
    famous_works={a: [(w, None) for w in works] for a, works in REAL_FAMOUS_WORKS.items()},
    pair_subjects=False, csv_prefix="", lpips=True)


def world_of(pipe):
    """TOY for the toy world's models (prompts.is_toy: the pruned 720-token tokenizer), else REAL."""
    return TOY if is_toy(pipe) else REAL
