"""Anchor prompts for ESD's broad preservation term (`--preserve N`): random prompts about unrelated
things, in many styles, with words outside the toy vocabulary, so that preservation covers more
than the other artists' usual phrasings.

    anchor_prompts(200, seed=0, exclude=["Vincent van Gogh"])

Kept apart from the collateral evaluation: a prompt equal (normalised) to any phrasing the
collateral generator can produce (`phrasings.every_phrasing`) is never drawn, so that evaluation
stays unseen by every trainer. The erased concepts (`exclude`) never appear.
"""
import numpy as np

from .toyart.world import ARTISTS, GENERIC_STYLES, SUBJECTS

NOUNS = SUBJECTS + ["dog", "cat", "bicycle", "kitchen", "ocean", "city", "forest", "chair", "bridge", "river",
                    "street", "garden", "window", "bird", "robot", "cup", "book", "lamp", "castle", "train"]
ADJECTIVES = ["red", "old", "small", "bright", "quiet", "wooden", "modern", "foggy", "tiny", "golden", "empty",
              "green"]
MEDIA = ["a photo", "a photograph", "a painting", "a drawing", "a sketch", "a watercolor", "an oil painting",
         "a 3d render", "pixel art", "a poster", "an illustration", "a snapshot"]
TEMPLATES = ["{medium} of a {adj} {noun}", "{adj} {noun} next to a {noun2}", "{medium} of a {noun} and a {noun2}",
             "a {adj} {noun}, {medium}", "{noun} with {adj} {noun2}", "{medium} of a {noun} by {artist}",
             "a {noun} in {style} style near a {noun2}", "{adj} {noun}, {adj2} light"]


def anchor_prompts(n, seed=0, exclude=()):
    """n distinct anchor prompts drawn with `seed`: templates x nouns, adjectives, media and the styles
    and artists not in `exclude`; never a collateral phrasing, never an excluded concept."""
    from .phrasings import every_phrasing, normalise
    taken = {normalise(p.prompt) for p in every_phrasing()}
    artists = [a for a in ARTISTS if a not in exclude] or ["an unknown artist"]
    styles = [s for s in GENERIC_STYLES if s not in exclude] or ["plain"]
    banned = [e.lower() for e in exclude]
    rng = np.random.default_rng(seed)
    pick = lambda pool: pool[int(rng.integers(len(pool)))]  # noqa: E731
    out, seen = [], set()
    for _ in range(100 * n):
        if len(out) == n:
            break
        text = pick(TEMPLATES).format(medium=pick(MEDIA), adj=pick(ADJECTIVES), adj2=pick(ADJECTIVES),
                                      noun=pick(NOUNS), noun2=pick(NOUNS), artist=pick(artists), style=pick(styles))
        key = normalise(text)
        if key in seen or key in taken or any(b in key for b in banned):
            continue
        seen.add(key)
        out.append(text)
    return out
