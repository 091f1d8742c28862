"""Collateral damage on phrasings no trainer used (evaluation/collateral_evaluation.py).

`collateral` draws every phrasing of `spatial_erasure.phrasings` with the base model and with each
erasure applied (the same seed per phrasing for every model), asks the judge for style and subject,
and `summarise` scores one model: per style and kind, the share recognised as the style asked for
and the share whose subject is kept; per kind, the target's rate (the erased concept still
recognised), the rate of every other style (retention) and subjects; for the no-style kind, the
style the model paints by default and how often it is the base model's style for the same seed.
"""
from collections import Counter

import numpy as np

from .metrics import cached_generate
from ..erasure_file import erased
from ..phrasings import KINDS, STYLED_KINDS
from ..prompts import is_cut
from ..toyart.world import STYLES, SUBJECTS


def _rate(hits, idx):
    """Mean of hits over the indices idx; None when idx is empty (that kind or style was not run)."""
    return float(np.mean([hits[i] for i in idx])) if len(idx) else None


def summarise(phrasings, styles, subjects, concept, base_styles):
    """One model's scores from the judge's style and subject per phrasing (lists aligned with
    `phrasings`); base_styles are the base model's styles for the same phrasings and seeds."""
    style_hit = [s == p.style for s, p in zip(styles, phrasings)]
    subject_hit = [u == p.subject for u, p in zip(subjects, phrasings)]
    where = lambda keep: [i for i, p in enumerate(phrasings) if keep(p)]  # noqa: E731
    kinds = [k for k in KINDS if any(p.kind == k for p in phrasings)]
    styled = [k for k in kinds if k in STYLED_KINDS]
    cell = {s: {k: where(lambda p: p.style == s and p.kind == k) for k in styled} for s in STYLES}
    target = lambda p: p.style == concept                            # noqa: E731
    retain = lambda p: p.style is not None and p.style != concept   # noqa: E731
    by_kind = {k: {"target_rate": _rate(style_hit, where(lambda p: p.kind == k and target(p))),
                   "retain_rate": _rate(style_hit, where(lambda p: p.kind == k and retain(p))),
                   "subject_rate": _rate(subject_hit, where(lambda p: p.kind == k))} for k in kinds}
    by_kind["all styled kinds"] = {"target_rate": _rate(style_hit, where(target)),
                                   "retain_rate": _rate(style_hit, where(retain)),
                                   "subject_rate": _rate(subject_hit, where(lambda p: p.style is not None))}
    out = {"style_rate": {s: {k: _rate(style_hit, cell[s][k]) for k in styled} for s in STYLES},
           "subject_rate": {s: {k: _rate(subject_hit, cell[s][k]) for k in styled} for s in STYLES},
           "by_kind": by_kind}
    plain = where(lambda p: p.style is None)
    if plain:
        painted = Counter(styles[i] for i in plain)
        out["no_style"] = {
            "subject_rate": {u: _rate(subject_hit, [i for i in plain if phrasings[i].subject == u]) for u in SUBJECTS},
            "styles": {s: painted[s] / len(plain) for s in sorted(painted, key=lambda s: -painted[s])},
            "same_style_as_base": _rate([a == b for a, b in zip(styles, base_styles)], plain)}
        by_kind["no_style"]["same_style_as_base"] = out["no_style"]["same_style_as_base"]
    return out


def cut_by_kind(tokenizer, phrasings):
    """{kind: phrasings longer than the text encoder's window}: their tails are cut (the toy model keeps
    22 tokens and a word outside its vocabulary costs a token per symbol; SD keeps 75)."""
    cut = Counter(p.kind for p in phrasings if is_cut(tokenizer, p.prompt))
    return {k: cut[k] for k in KINDS if any(p.kind == k for p in phrasings)}


def collateral(pipe, judge, phrasings, erasures, folder, concept, seed, steps, guidance):
    """Images of every phrasing (seed + its index) by the base model and with each erasure of
    `erasures` ({name: path}) applied, cached in `folder`, judged and summarised. Returns {"models":
    {name: summary}, "rows": one per phrasing with every model's verdict, "images": {name: (N, H, W, 3)}}."""
    prompts, seeds = [p.prompt for p in phrasings], list(range(seed, seed + len(phrasings)))
    kw = dict(num_inference_steps=steps, guidance_scale=guidance)
    images = {"base": cached_generate(pipe, prompts, seeds, folder, "base", desc="base", **kw)}
    for name, path in erasures.items():        # generate() notes cut prompts once; cut_by_kind counts them
        with erased(pipe, path):
            images[name] = cached_generate(pipe, prompts, seeds, folder, name, desc=name, **kw)
    labels = {}
    for name, im in images.items():
        v = judge(im)
        labels[name] = (v.styles(), v.subjects())
    models = {name: summarise(phrasings, *labels[name], concept, labels["base"][0]) for name in images}
    rows = [{"prompt": p.prompt, "kind": p.kind, "style": p.style, "subject": p.subject, "seed": s,
             **{f"{name} {what}": labels[name][j][i] for name in images for j, what in enumerate(("style", "subject"))}}
            for i, (p, s) in enumerate(zip(phrasings, seeds))]
    return {"models": models, "rows": rows, "images": images}
