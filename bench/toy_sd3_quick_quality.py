"""Quick quality check of the toy SD3 (models/toyart-sd3): 4 images per style on held-out phrasings,
judged by the toy classifier (36 images, 20 steps, guidance 3, max_sequence_length 8).

    python bench/toy_sd3_quick_quality.py
"""
import numpy as np

from spatial_erasure.models import TOY_CLASSIFIER, load_pipeline
from spatial_erasure.sampling import generate
from spatial_erasure.toyart.classifier import load_classifier, predict, to_tensor
from spatial_erasure.toyart.world import (ARTIST_TEMPLATES_HELDOUT, GENERIC_TEMPLATES_HELDOUT,
                                          PHOTO_TEMPLATES_HELDOUT, STYLES, SUBJECTS)


def prompt(style, subject, j):
    if style == "photo":
        return PHOTO_TEMPLATES_HELDOUT[j % 2].format(subject=subject)
    if style[0].isupper():
        return ARTIST_TEMPLATES_HELDOUT[j % 2].format(subject=subject, artist=style)
    return GENERIC_TEMPLATES_HELDOUT[j % 2].format(subject=subject, style=style)


def main():
    pipe, clf = load_pipeline("models/toyart-sd3"), load_classifier(TOY_CLASSIFIER)
    rows = [(si, SUBJECTS.index(su), prompt(st, su, j)) for si, st in enumerate(STYLES)
            for j, su in enumerate(SUBJECTS[:4])]
    imgs = generate(pipe, [p for _, _, p in rows], list(range(len(rows))), num_inference_steps=20,
                    guidance_scale=3.0, max_sequence_length=8)
    ps, pu, _ = predict(clf, to_tensor(imgs))
    ok_st = ps.argmax(1).numpy() == np.array([s for s, _, _ in rows])
    ok_su = pu.argmax(1).numpy() == np.array([u for _, u, _ in rows])
    for si, st in enumerate(STYLES):
        print(f"{st}: style {ok_st[si * 4:(si + 1) * 4].mean():.2f}")
    print(f"style {ok_st.sum()}/{len(rows)}, subject {ok_su.sum()}/{len(rows)}")


if __name__ == "__main__":
    main()
