"""Prompts: encode once into denoiser conditioning (spatial_erasure.families), and the evaluation CSV format.

CSV columns (the reference ESD format): case_number, prompt, evaluation_seed, and optionally
negative_prompt and guidance_scale.
"""
import csv
import io
import os

import numpy as np

from .conditioning import Cond, cut_prompts, is_cut, one_note_on_cut_prompts  # noqa: F401  (re-exported)
from .errors import InputError
from .families import family_of
from .files import atomic_path


def encode(pipe, prompts, resolution=None):
    """Encode a list of prompts with the pipeline's own text encoder(s), as its model family does
    (spatial_erasure.families); returns a Cond on pipe.device."""
    return family_of(pipe).encode(pipe, list(prompts), resolution)


REQUIRED = ("case_number", "prompt", "evaluation_seed")


def csv_reader(path, what):
    """A csv.DictReader over a UTF-8 file (a byte-order mark is fine); InputError in one line for
    another encoding."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
                         "save it as UTF-8") from None
    return csv.DictReader(io.StringIO(text, newline=""))


def read_prompt_csv(path):
    """Rows of a prompt CSV as dicts with typed fields; one clear error for a malformed file."""
    if not os.path.isfile(path):
        raise InputError(f"prompt CSV {path} does not exist; pass a file such as prompts/toy_vangogh.csv")
    reader = csv_reader(path, "prompt CSV")
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}; a prompt CSV needs "
                         f"{', '.join(REQUIRED)} (optional: negative_prompt, guidance_scale)")
    rows = []
    for i, r in enumerate(reader, start=2):
        try:
            row = {"case_number": int(r["case_number"]), "prompt": r["prompt"],
                   "evaluation_seed": int(r["evaluation_seed"])}
            if r.get("negative_prompt"):
                row["negative_prompt"] = r["negative_prompt"]
            if r.get("guidance_scale"):
                row["guidance_scale"] = float(r["guidance_scale"])
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}, line {i}: {e}; case_number and evaluation_seed must be integers") from e
        rows.append({**{k: v for k, v in r.items() if k not in row and v not in (None, "")}, **row})
    cases = [r["case_number"] for r in rows]
    if len(set(cases)) != len(cases):
        raise InputError(f"{path}: case_number values repeat; give each row its own case_number")
    return rows


def write_prompt_csv(path, rows, extra_columns=()):
    """Write rows (dicts) in the CSV format above, atomically."""
    cols = list(REQUIRED) + [c for c in ("negative_prompt", "guidance_scale") if any(c in r for r in rows)]
    cols += [c for c in extra_columns if c not in cols]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# Prompt variations for inpainting erasure: (prompt with the concept, its neutral twin without it).
REAL_TEMPLATES = [("a painting of a {subject} by {concept}", "a painting of a {subject}"),
                  ("a {subject} in the style of {concept}", "a {subject}"),
                  ("{concept} style painting of a {subject}", "a painting of a {subject}"),
                  ("an oil painting of a {subject}, by {concept}", "an oil painting of a {subject}"),
                  ("artwork of a {subject} inspired by {concept}", "artwork of a {subject}")]
REAL_SUBJECTS = ["house", "boat", "car", "tree", "mountain", "flower", "city street at night", "cafe terrace",
                 "portrait of a woman", "wheat field", "river", "bridge", "garden", "village", "harbor",
                 "starry sky", "bedroom", "still life with fruit", "cat", "church"]
REAL_RETAIN = ["Claude Monet", "Pablo Picasso", "Leonardo da Vinci", "Andy Warhol", "Katsushika Hokusai",
               "Rembrandt", "Salvador Dali", "Johannes Vermeer", "Paul Cezanne", "Gustav Klimt"]
# Famous works by title, for the famous-work attack (the toy world has one per artist, world.FAMOUS_WORKS).
REAL_FAMOUS_WORKS = {
    "Vincent van Gogh": ["The Starry Night", "Sunflowers", "Cafe Terrace at Night", "Wheatfield with Crows",
                         "The Potato Eaters", "Irises"],
    "Claude Monet": ["Water Lilies", "Impression, Sunrise", "Woman with a Parasol", "The Japanese Footbridge"],
    "Pablo Picasso": ["Guernica", "Les Demoiselles d'Avignon", "The Old Guitarist", "The Weeping Woman"],
    "Leonardo da Vinci": ["Mona Lisa", "The Last Supper", "Lady with an Ermine"],
    "Andy Warhol": ["Campbell's Soup Cans", "Marilyn Diptych", "Banana"],
    "Katsushika Hokusai": ["The Great Wave off Kanagawa", "Fine Wind, Clear Morning", "Red Fuji"],
    "Salvador Dali": ["The Persistence of Memory", "Swans Reflecting Elephants"],
    "Gustav Klimt": ["The Kiss", "Portrait of Adele Bloch-Bauer I"],
    "Johannes Vermeer": ["Girl with a Pearl Earring", "The Milkmaid"],
    "Rembrandt": ["The Night Watch", "The Anatomy Lesson of Dr. Nicolaes Tulp"],
}
# Styles that are not artists: the real-SD judge's other labels (evaluation.metrics.ClipJudge).
REAL_STYLES = ["impressionism", "cubism", "pop art", "ukiyo-e", "surrealism", "watercolor", "pixel art"]
# The toy world: its training phrasings (held-out ones stay for evaluation) and their neutral twins.
TOY_TEMPLATES = [("a painting of a {subject} by {concept}", "a painting of a {subject}"),
                 ("{subject} in the style of {concept}", "a {subject}"),
                 ("{concept}'s {subject}", "a {subject}"),
                 ("a {subject} painted by {concept}", "a painting of a {subject}"),
                 ("an artwork of a {subject}, {concept}", "an artwork of a {subject}")]


# How a prompt loses its artist (`twin_of`): the first of these (in order) found in it is cut, "{style}"
# standing for the artist: "a drawing of a house by {style}" -> "a drawing of a house", "{style}" -> "".
TWIN_CUTS = [" by the artist {style}", "; by {style}", "by {style}, ", " by {style}", "in the style of {style}, ",
             " in the style of {style}", "{style}'s ", "{style}, ", "{style}: ", " -- {style}", " / {style}",
             " - {style}", ", {style}", "{style} made ", "{style} ", "{style}"]


def twin_of(template):
    """The neutral twin of a template naming an artist as {style} (or {artist}): the same words with
    the artist cut (TWIN_CUTS). The twin of the bare "{style}" is "", the empty prompt."""
    t = template.replace("{artist}", "{style}")
    cut = next((c for c in TWIN_CUTS if c in t), None)
    if cut is None:
        raise ValueError(f"{template!r} names no {{style}}; a twin is the prompt without its artist")
    return t.replace(cut, "", 1)


def neutral_twin(prompt, concept):
    """The prompt without `concept` (twin_of): "a painting by Claude Monet" -> "a painting", the bare
    concept -> "" (what the model draws with no prompt at all); InputError if it does not name it."""
    if concept.lower() not in prompt.lower():
        raise InputError(f"{prompt!r} does not name {concept!r}, so it has no twin without it; name the concept "
                         "in the prompt (its twin is the prompt without it)")
    i = prompt.lower().index(concept.lower())
    return twin_of(prompt[:i].replace("{", "{{").replace("}", "}}") + "{style}"
                   + prompt[i + len(concept):].replace("{", "{{").replace("}", "}}")).format()


def parse_concepts(text, erase_from=None):
    """[(concept, erase_from)] from --erase_concept: one concept, a ';'-separated list, or a CSV file
    (a path ending in .csv) with a `concept` column and an optional `erase_from` column. A single
    concept takes `erase_from` (--erase_from); with several, erase_from comes from the CSV or is each
    concept itself."""
    if text.endswith(".csv"):
        if not os.path.isfile(text):
            raise InputError(f"concept CSV {text} does not exist; pass a file with a concept column (and optionally "
                             "erase_from), or the concepts themselves separated by ';'")
        reader = csv_reader(text, "concept CSV")
        if "concept" not in (reader.fieldnames or []):
            raise InputError(f"{text}: no concept column; a concept CSV has the columns concept and, "
                             "optionally, erase_from")
        pairs = [(r["concept"].strip(), (r.get("erase_from") or "").strip() or None) for r in reader]
    else:
        pairs = [(c.strip(), None) for c in text.split(";")]
    pairs = [(c, f) for c, f in pairs if c]
    if not pairs:
        raise InputError(f"--erase_concept {text!r} names no concept; pass a concept, 'A;B;C' or a concept CSV")
    if len({c for c, _ in pairs}) < len(pairs):
        raise InputError(f"--erase_concept {text!r} names a concept twice; name each once")
    if erase_from:
        if len(pairs) > 1:
            raise InputError("--erase_from is for one concept; with several, give an erase_from column in a concept "
                             "CSV")
        pairs = [(pairs[0][0], erase_from)]
    return pairs


def is_toy(pipe):
    """The toy world's models (and the fixtures built on them) use the pruned 720-token tokenizer."""
    return len(pipe.tokenizer) < 1000


def concept_variations(concept, n, world, seed=0):
    """n rows {prompt, neutral, seed}: the world's (worlds.World) templates x subjects, shuffled with `seed`;
    beyond the distinct pairs, pairs repeat with new source-image seeds (each row is one prompt and one
    source image)."""
    pairs = [(t.format(subject=s, concept=concept), z.format(subject=s)) for t, z in world.templates
             for s in world.subjects]
    order = np.random.default_rng(seed).permutation(len(pairs))
    return [{"case_number": i, "prompt": pairs[order[i % len(pairs)]][0], "neutral": pairs[order[i % len(pairs)]][1],
             "evaluation_seed": seed * 1000 + i} for i in range(n)]


def retain_prompts(erased, world, templates=None):
    """The world's (worlds.World) other artists and styles on its retain subjects, in the first `templates`
    phrasings of each (default: as many as first published, world.retain_phrasings), for the retain term;
    `erased` (one concept, or a list of the concepts one run erases) excluded."""
    erased = {erased} if isinstance(erased, str) else set(erased)
    n = templates or world.retain_phrasings
    return [t.format(subject=s) for a, ts in world.retain_styles.items() if a not in erased for t in ts[:n]
            for s in world.retain_subjects]
