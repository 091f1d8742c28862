"""What an erased model paints instead: its images of concept prompts against the base model's images
of their neutral twins ("a house by Van Gogh" should become "a house", not a flower or a blank).

    s = substitutes(judge(erased_on_concept), judge(base_on_twins), judge(base_on_twins_other_seeds),
                    subjects, erased_on_concept, base_on_twins, base_on_twins_other_seeds)

The first two sets share prompts' subjects and seeds; the third is the base model on the same
twins with other seeds, and every distance is reported beside the same distance between the two
base sets (the spread a model's own seeds give): `fd_ratio` = FD(erased, base twins) / FD(base
twins, base twins other seeds). `region` (N, H, W) bool restricts colour and contrast to a mask.
"""
from collections import Counter

import numpy as np

from .metrics import frechet_distance

LUMA = np.array([0.299, 0.587, 0.114])


def colour_contrast(images, region=None):
    """Per image: mean RGB (N, 3) and contrast, the standard deviation of luminance (N,), over
    `region` (N, H, W) or the whole image; uint8 scale."""
    x = np.asarray(images, np.float64)
    m = np.ones(x.shape[:3], bool) if region is None else np.asarray(region, bool)
    colour = np.stack([x[i][m[i]].mean(0) for i in range(len(x))])
    contrast = np.array([(x[i][m[i]] @ LUMA).std() for i in range(len(x))])
    return colour, contrast


def style_shares(styles):
    """{style: share} of a list of labels, most frequent first."""
    c = Counter(styles)
    return {s: c[s] / len(styles) for s in sorted(c, key=lambda s: -c[s])}


def colour_shift(images, twin_images, twin_images_b, region=None):
    """Colour and contrast of `images` against the base twins', beside the base's own seed spread:
    colour_shift (distance of mean RGB, 0-255), contrast (std of luminance) of each set."""
    (c_e, s_e), (c_t, s_t), (c_b, s_b) = (colour_contrast(x, region) for x in (images, twin_images, twin_images_b))
    return {"colour_shift": float(np.linalg.norm(c_e.mean(0) - c_t.mean(0))),
            "colour_shift_base_seeds": float(np.linalg.norm(c_b.mean(0) - c_t.mean(0))),
            "contrast": float(s_e.mean()), "contrast_base_twins": float(s_t.mean()),
            "contrast_base_seeds": float(s_b.mean())}


def substitutes(erased, twins, twins_b, subjects, images, twin_images, twin_images_b, region=None):
    """Verdicts of the three sets (see the module docstring) and their uint8 images; subjects asked for
    per row (None: not checked). Returns subject kept (erased / base twins, and their ratio), the style
    distribution of each, the Frechet distance on the judge's features with the seed spread, and the
    colour and contrast of the region beside the base's seed spread."""
    checked = [i for i, u in enumerate(subjects) if u is not None]
    kept = lambda v: float(np.mean([v.subjects()[i] == subjects[i] for i in checked])) if checked else None  # noqa: E731
    k_erased, k_twins = kept(erased), kept(twins)
    fd, fd_seeds = frechet_distance(erased.features, twins.features), frechet_distance(twins.features, twins_b.features)
    return {"subject_kept": k_erased, "subject_kept_base_twins": k_twins,
            "subject_ratio": None if not k_twins else k_erased / k_twins,
            "styles": style_shares(erased.styles()), "base_twin_styles": style_shares(twins.styles()),
            "fd": fd, "fd_base_seeds": fd_seeds, "fd_ratio": fd / fd_seeds if fd_seeds > 0 else None,
            **colour_shift(images, twin_images, twin_images_b, region)}
