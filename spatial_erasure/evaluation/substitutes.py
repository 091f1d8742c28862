"""What an erased model paints instead: its images of concept prompts against the base model's images
of their neutral twins ("a house by Van Gogh" should become "a house", not a flower or a blank).

    s = substitutes(judge(erased_on_concept), judge(base_on_twins), judge(base_on_twins_other_seeds),
                    subjects, erased_on_concept, base_on_twins, base_on_twins_other_seeds)

The first two sets share prompts' subjects and seeds; the third is the base model on the same
twins with other seeds, and every distance is reported beside the same distance between the two
base sets (the spread a model's own seeds give): `fd_ratio` = FD(erased, base twins) / FD(base
twins, base twins other seeds). `region` (N, H, W) bool restricts colour and contrast to a mask.

The paired measure of "paints the twin" (`paired_distance`) needs the base model's own images of
the concept prompts too, same seeds: 0 means the erased model paints exactly the base model's twin,
1 means it is as far from the twin as the unerased model.
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


def paired_distance(images, twin_images, base_images, region=None):
    """Per pair (same prompt pair, seed [and source image and mask]): pixel RMSE of `images` (the
    erased model on the concept prompt) from `twin_images` (the base model on its neutral twin), over
    `region` (N, H, W) or the whole image. `twin_distance` = mean RMSE over pairs / the same for
    `base_images` (the base model on the concept prompt): 0 = paints the twin, 1 = no erasure."""
    def rmse(a, b):
        d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
        m = np.ones(d.shape[:3], bool) if region is None else np.asarray(region, bool)
        return np.array([np.sqrt(d[i][m[i]].mean()) for i in range(len(d))])
    erased, base = rmse(images, twin_images), rmse(base_images, twin_images)
    return {"twin_distance": float(erased.mean() / base.mean()) if base.mean() > 0 else None,
            "rmse_to_twin": float(erased.mean()), "rmse_base_to_twin": float(base.mean())}


def style_excess(shares, base_shares, concept=None):
    """(style, points): the style whose share most exceeds its share among the base twins (the concept
    left out: its own rate is reported apart). 0.6 Hokusai against 0.1 gives ("Katsushika Hokusai", 0.5)."""
    gaps = {s: v - base_shares.get(s, 0.0) for s, v in shares.items() if s != concept}
    top = max(gaps, key=gaps.get, default=None)
    return top, (float(gaps[top]) if top is not None else 0.0)


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


def substitutes(erased, twins, twins_b, subjects, images, twin_images, twin_images_b, region=None, base_images=None,
                concept=None):
    """Verdicts of the three sets (see the module docstring) and their uint8 images; subjects asked for
    per row (None: not checked). Returns subject kept (erased / base twins, and their ratio), the style
    distribution of each and the largest excess over the twins' (`style_excess`), the Frechet distance
    on the judge's features with the seed spread, the colour and contrast of the region beside the
    base's seed spread, and with `base_images` (the base model on the concept prompts, same seeds)
    the paired twin distance."""
    checked = [i for i, u in enumerate(subjects) if u is not None]
    kept = lambda v: float(np.mean([v.subjects()[i] == subjects[i] for i in checked])) if checked else None  # noqa: E731
    k_erased, k_twins = kept(erased), kept(twins)
    fd, fd_seeds = frechet_distance(erased.features, twins.features), frechet_distance(twins.features, twins_b.features)
    shares, twin_shares = style_shares(erased.styles()), style_shares(twins.styles())
    top, excess = style_excess(shares, twin_shares, concept)
    return {"subject_kept": k_erased, "subject_kept_base_twins": k_twins,
            "subject_ratio": None if not k_twins else k_erased / k_twins,
            "styles": shares, "base_twin_styles": twin_shares, "top_excess_style": top, "style_excess": excess,
            **(paired_distance(images, twin_images, base_images, region) if base_images is not None else {}),
            "fd": fd, "fd_base_seeds": fd_seeds, "fd_ratio": fd / fd_seeds if fd_seeds > 0 else None,
            **colour_shift(images, twin_images, twin_images_b, region)}
