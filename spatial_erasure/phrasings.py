"""Phrasings no trainer used: the toy world's styles and subjects worded differently, by kind.

The evaluations measure retention on phrasings the project tuned on (the held-out templates of
`toyart.world`, prompts/toy_*.csv). A user words prompts otherwise; these phrasings measure the
collateral damage of an erasure there (evaluation/collateral_evaluation.py).

    phrasings = unseen_phrasings(per_style=4, seed=0)     # [Phrasing(prompt, kind, style, subject)]
    every_phrasing()                                      # every string the generator can produce
    training_prompts()                                    # every prompt any trainer or evaluation uses
    collisions(phrasings, training_prompts())             # [] : the two sets share nothing

Each kind has templates for the three families of style (artists, the generic styles, photo);
`{style}` is the artist's name or the generic style, `{subject}` the subject word, which every
phrasing keeps (the judge checks it). Templates are drawn in a seeded order, so the same seed gives
the same phrasings. The toy tokenizer lowercases (CLIP's does too), so a change of case alone is
no new phrasing: the case changes come with punctuation, and `normalise` lowercases.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .models import MODELS_DIR, REPO_ROOT
from .prompts import TOY_TEMPLATES, twin_of
from .toyart import world
from .toyart.world import GENERIC_STYLES, PHOTO, STYLES, SUBJECTS, style_prompt

KINDS = {
    "reordered": "the words of a usual phrasing in another order",
    "synonyms": "other words for painting / photo (drawing, sketch, image, ...) and filler adjectives",
    "out_of_vocabulary": "prompt-engineering words outside the toy vocabulary (byte symbols to the toy tokenizer)",
    "punctuation_case": "punctuation and upper / title / mixed case",
    "no_style": "the subject alone, no style word: which style does the model paint by default?",
    "long": "style and subject first, then a long description (25 to 32 words; the toy model keeps 22 tokens)",
}
STYLED_KINDS = [k for k in KINDS if k != "no_style"]
SEED, PER_STYLE = 7000, 4      # evaluation/collateral_evaluation.py's defaults (4: the toy run's time budget)

# KIND -> family -> templates. Families: "artist" ({style} = a name), "generic" ({style} = impressionist,
# cubist), "photo" (no {style} slot). None of these strings is a training or evaluation phrasing
# (tests/test_collateral.py checks every filled template against `training_prompts`).
TEMPLATES = {
    "reordered": {
        "artist": ["by {style}, a painting of a {subject}", "{subject}, painted by {style}",
                   "of a {subject}, a painting by {style}", "{style}, a {subject}", "{style} painted a {subject}",
                   "in the style of {style}, a {subject}"],
        "generic": ["in {style} style, a {subject}", "{subject}, a {style} painting",
                    "a painting of a {subject}, {style}", "{style} style, a {subject}",
                    "a {subject} painted in {style} style", "{subject}, {style} art"],
        "photo": ["of a {subject}, a photo", "a {subject}, photo", "a {subject} in a photo", "photo, a {subject}",
                  "a {subject} photograph", "showing a {subject}, a photo"],
    },
    "synonyms": {
        "artist": ["a drawing of a {subject} by {style}", "a sketch of a {subject} by the artist {style}",
                   "an image of a {subject} by {style}", "a lovely painting of a {subject} by {style}",
                   "a scene with a {subject} by {style}", "a beautiful artwork showing a {subject} by {style}"],
        "generic": ["a {style} drawing of a {subject}", "a {style} sketch of a {subject}",
                    "an image of a {subject} in {style} style", "a lovely {style} scene with a {subject}",
                    "a beautiful {style} picture of a {subject}", "a {subject}, {style} artwork"],
        "photo": ["a photo image of a {subject}", "a clear photograph showing a {subject}",
                  "an image of a {subject}, photo", "a lovely photo of the {subject}",
                  "a realistic image of a {subject}", "a beautiful photograph of a {subject}"],
    },
    "out_of_vocabulary": {
        "artist": ["{subject} by {style}, masterpiece, trending on artstation", "oil on canvas, {style}, {subject}",
                   "a gorgeous {subject} by {style}, 4k", "{style} {subject} hd wallpaper",
                   "museum print: {subject} by {style}", "{subject} by {style}, highly detailed, sharp focus"],
        "generic": ["{style} {subject}, masterpiece, trending on artstation", "oil on canvas, {style}, {subject}",
                    "a gorgeous {style} {subject}, 4k", "{style} {subject} hd wallpaper",
                    "museum print: {style} {subject}", "{style} {subject}, highly detailed, sharp focus"],
        "photo": ["{subject}, dslr photo, 4k, bokeh", "a photo of a {subject} taken with a canon eos",
                  "stock photo {subject}, hdr", "a {subject}, photo, 35mm film",
                  "{subject} photo, highly detailed, sharp focus", "award winning photo: {subject}"],
    },
    "punctuation_case": {
        "artist": ["{subject}... by {style}!", "{style}: {subject}.", "({subject}) -- {style}",
                   "a painting of a {subject}; by {style}?", "{subject} / {style} / painting",
                   "\"{subject}\" - {style}"],
        "generic": ["{style}: {subject}.", "{subject} -- {style} style!", "({style}) a {subject}...",
                    "a {subject}; {style} painting?", "{subject} / {style} / art", "\"{subject}\" - {style}"],
        "photo": ["photo: {subject}.", "{subject} -- photo!", "(photo) a {subject}...", "a {subject}; photograph?",
                  "{subject} / photo", "\"{subject}\" - photo"],
    },
    "no_style": {
        "none": ["{subject}", "the {subject}", "a {subject} scene", "an image of a {subject}", "one {subject}, alone",
                 "a {subject} in the middle"],
    },
    "long": {
        "artist": ["a painting of a {subject} by {style}, with the sky above and the ground below, the {subject} in "
                   "the middle of the scene, on a quiet day, seen from far away",
                   "{style} made this picture of a {subject} on a calm day, with the sky and the ground and the "
                   "{subject} in the centre, and nothing else in the scene",
                   "an artwork by {style}: it shows a {subject} standing alone in the scene, with nothing else "
                   "around it, in soft light, as a gift for a friend",
                   "a {subject} by {style}, in the middle of a wide scene, with the sky and the ground around it, and "
                   "the whole image painted as a gift for a friend"],
        "generic": ["a {style} painting of a {subject}, with the sky above and the ground below, the {subject} in "
                    "the middle of the scene, on a quiet day, seen from far away",
                    "a {style} picture of a {subject} on a calm day, with the sky and the ground and the {subject} "
                    "in the centre, and nothing else in the scene",
                    "{style} art: it shows a {subject} standing alone in the scene, with nothing else around it, in "
                    "soft light, as a gift for a friend",
                    "a {subject} in {style} style, in the middle of a wide scene, with the sky and the ground around "
                    "it, and the whole image painted as a gift for a friend"],
        "photo": ["a photo of a {subject}, with the sky above and the ground below, the {subject} in the middle of "
                  "the scene, on a quiet day, seen from far away",
                  "a photograph of a {subject} taken on a calm day, with the sky and the ground and the {subject} in "
                  "the centre, and nothing else in the scene",
                  "a realistic photo: it shows a {subject} standing alone in the scene, with nothing else around it, "
                  "in soft light, as a gift for a friend",
                  "a {subject} in a photo, in the middle of a wide scene, with the sky and the ground around it, and "
                  "the whole image taken as a gift for a friend"],
    },
}
CASES = {"as written": str, "upper": str.upper, "title": str.title,
         "alternating": lambda s: "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(s))}


@dataclass(frozen=True)
class Phrasing:
    """One prompt and what it asks for: style None for the no-style kind (the judge checks the subject only)."""
    prompt: str
    kind: str
    style: str | None
    subject: str
    twin: str | None = None   # the same prompt without its style (twin_pairs)


def family(style):
    """Which templates of a kind fit `style`: artist, generic or photo (None: no style word)."""
    return "none" if style is None else "photo" if style == PHOTO else "generic" if style in GENERIC_STYLES \
        else "artist"


def fill(template, style, subject, case="as written"):
    """A template filled for (style, subject), then the case change (punctuation_case only)."""
    return CASES[case](style_prompt(style or "", subject, template))


def _cells(kinds):
    """(kind, style) cells in a fixed order: every style for a styled kind, one cell for no_style."""
    return [(k, s) for k in KINDS if k in kinds for s in ([None] if k == "no_style" else STYLES)]


def unseen_phrasings(per_style, seed=0, kinds=tuple(KINDS)):
    """per_style phrasings per (kind, style), no_style: per_style per subject. Within a cell, templates
    in a seeded order (every template once before any repeats) and subjects cycled from a seeded
    start, with no (template, subject) pair twice until all are used; the punctuation_case kind draws
    a case per phrasing. Same seed, same list; each cell has its own generator, so a subset of kinds
    gives the same phrasings as the full set."""
    out = []
    for kind, style in _cells(kinds):
        rng = np.random.default_rng([seed, list(KINDS).index(kind), STYLES.index(style) if style else len(STYLES)])
        pool = TEMPLATES[kind][family(style)]
        n = per_style * (len(SUBJECTS) if style is None else 1)
        order, start = rng.permutation(len(pool)), int(rng.integers(len(SUBJECTS)))
        for k in range(n):
            subject = SUBJECTS[(start + k) % len(SUBJECTS)]
            case = list(CASES)[rng.integers(len(CASES))] if kind == "punctuation_case" else "as written"
            # after each round of subjects the templates shift by one: new (template, subject) pairs
            template = pool[order[(k + k // len(SUBJECTS)) % len(pool)]]
            out.append(Phrasing(fill(template, style, subject, case), kind, style, subject))
    return out


def every_phrasing(kinds=tuple(KINDS)):
    """Every phrasing `unseen_phrasings` can produce, whatever the seed: each template x style x subject
    (x case for punctuation_case)."""
    out = []
    for kind, style in _cells(kinds):
        cases = list(CASES) if kind == "punctuation_case" else ["as written"]
        out += [Phrasing(fill(t, style, u, c), kind, style, u) for t in TEMPLATES[kind][family(style)]
                for u in SUBJECTS for c in cases]
    return out


# ----------------------------------------------------------------------------- held-out pairs with twins
PAIR_KINDS = {"heldout": "the toy world's two held-out artist phrasings (never in training)",
              **{k: v for k, v in KINDS.items() if k in STYLED_KINDS},
              "trained": "the trainers' own variations (prompts.TOY_TEMPLATES): how well an erasure fits what it "
                         "trained on; not in the default set"}
HELD_OUT_KINDS = [k for k in PAIR_KINDS if k != "trained"]
def twin_pairs(concept, seed=0, kinds=tuple(HELD_OUT_KINDS)):
    """Every (held-out artist template, subject) of `kinds` for the artist `concept`, with its twin:
    [Phrasing] whose `twin` is the same prompt without the artist (punctuation_case: the same case
    change, drawn with `seed`). No prompt of the unseen kinds is a phrasing any trainer or other
    evaluation uses (tests/test_collateral.py); "heldout" ones are the toy model's held-out captions."""
    out = []
    for kind in kinds:
        if kind == "trained":
            pool = [(t.replace("{concept}", "{style}"), z) for t, z in TOY_TEMPLATES]
        else:
            pool = [(t, twin_of(t)) for t in (world.ARTIST_TEMPLATES_HELDOUT if kind == "heldout"
                                              else TEMPLATES[kind]["artist"])]
        rng = np.random.default_rng([seed, list(PAIR_KINDS).index(kind)])
        for template, twin in pool:
            for subject in SUBJECTS:
                case = list(CASES)[rng.integers(len(CASES))] if kind == "punctuation_case" else "as written"
                out.append(Phrasing(fill(template, concept, subject, case), kind, concept, subject,
                                    fill(twin, None, subject, case)))
    return out


# ----------------------------------------------------------------------------- what trainers use
def normalise(prompt):
    """A prompt as the toy (CLIP) tokenizer compares it: lowercased, whitespace runs as one space, trimmed."""
    return re.sub(r"\s+", " ", prompt).strip().lower()


def _csv_prompts(folders):
    """Every prompt (and neutral twin) of the prompt CSVs in `folders`: prompts/*.csv, models/*.prompts.csv."""
    from .prompts import read_prompt_csv
    out = []
    for folder, pattern in folders:
        for path in sorted(Path(folder).glob(pattern)):
            out += [r[c] for r in read_prompt_csv(str(path)) for c in ("prompt", "neutral") if r.get(c)]
    return out


def training_prompts():
    """Every prompt a trainer or an existing evaluation uses, normalised: the toy model's captions
    (every template of `toyart.world`, training and held-out, filled with every style, subject and
    famous work), grid erasure's prompt variations, neutral twins and retain prompts (toy and real
    templates), ESD's concept prompts, the judge's label texts, prompts/*.csv and models/*.prompts.csv."""
    from .prompts import REAL_RETAIN, REAL_STYLES, REAL_SUBJECTS, REAL_TEMPLATES, TOY_TEMPLATES, retain_prompts
    from .worlds import REAL, TOY
    template_sets = [getattr(world, name) for name in dir(world) if name.endswith("_TEMPLATES")
                     or name.endswith("_TEMPLATES_HELDOUT")]
    names = STYLES + REAL_RETAIN + REAL_STYLES
    subjects = SUBJECTS + REAL_SUBJECTS
    templates = [t for ts in template_sets for t in ts]
    known = [t.format(subject=u, artist=s, style=s, work=w) for t in templates for s in names for u in subjects
             for w in (world.FAMOUS_WORKS if "{work}" in t else [None])]
    known += [style_prompt(s, u, t) for t in templates if "{work}" not in t for s in STYLES for u in SUBJECTS]
    known += [x.format(subject=u, concept=s) for pair in TOY_TEMPLATES + REAL_TEMPLATES for x in pair
              for s in names for u in subjects]
    known += [p for s in STYLES for w in (TOY, REAL) for p in retain_prompts(s, w)]
    known += names + ["", "a photo"] + [f"a picture of a {u}" for u in subjects]        # ESD prompts, judge labels
    known += [f"a painting in the style of {s}" for s in names]
    known += _csv_prompts([(REPO_ROOT / "prompts", "*.csv"), (MODELS_DIR, "*.prompts.csv")])
    return {normalise(p) for p in known}


def collisions(phrasings, known):
    """The phrasings whose normalised prompt is in `known` (a set of normalised prompts)."""
    return [p for p in phrasings if normalise(p.prompt) in known]


def main(argv=None):
    """Write the unseen phrasings as a prompt CSV (case_number, prompt, evaluation_seed: seed + row, as
    evaluation/collateral_evaluation.py draws them with the same flags), with kind, expected_style and
    expected_subject. Write it outside prompts/: every CSV there counts as a training or evaluation set."""
    from . import cli
    from .prompts import write_prompt_csv
    p = cli.parser(main.__doc__ + "\n\n    python -m spatial_erasure.phrasings --per_style 4 --output "
                   "results/collateral/phrasings.csv")
    p.add_argument("--per_style", type=int, default=PER_STYLE, help="phrasings per style and kind (no_style: per "
                   "subject)")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS), metavar="KIND",
                   help=cli.choices_help(KINDS))
    cli.add_seed_arg(p, SEED)
    cli.add_output_arg(p, "results/collateral/phrasings.csv", "CSV to write")
    args = p.parse_args(argv)
    rows = [{"case_number": i, "prompt": x.prompt, "evaluation_seed": args.seed + i, "kind": x.kind,
             "expected_style": x.style or "", "expected_subject": x.subject}
            for i, x in enumerate(unseen_phrasings(args.per_style, args.seed, args.kinds))]
    write_prompt_csv(args.output, rows, extra_columns=["kind", "expected_style", "expected_subject"])
    print(f"wrote {args.output}: {len(rows)} phrasings")


if __name__ == "__main__":
    main()
