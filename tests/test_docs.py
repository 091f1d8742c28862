"""The counts the docs quote are the counts the code gives: tensors and parameters of the bundled erasure files and
of the real-size architectures, the concept-impact tests, prompt CSV rows, phrasings, twin pairs, masks, the toy
model's sizes and the scripts' defaults. Each row of CLAIMS reads the number (every match of its pattern) from the
doc's text and computes it from the code; no expected number is written here. Dated records (timings, one run of
the suite) are not claims about the code and are not checked."""
import functools
import json
import math
import os
import re

import pytest
from safetensors import safe_open

from conftest import REPO, load_script
from spatial_erasure import masks, phrasings, recipes
from spatial_erasure.architectures import count_parameters
from spatial_erasure.evaluation import toy_inpainting_quality
from spatial_erasure.evaluation.concept_impact import load_tests
from spatial_erasure.evaluation.regions import evaluation_masks
from spatial_erasure.prompts import read_prompt_csv
from spatial_erasure.toyart import world
from spatial_erasure.worlds import REAL, TOY

ESD_X = "models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors"
GRID = "models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors"
CLASSIFIER = "models/toyart-classifier/model.safetensors"
ATTACKS = "evaluation/attack_evaluation.py"
COLLATERAL = "evaluation/collateral_evaluation.py"
SPATIAL = "evaluation/spatial_evaluation.py"
TWIN = "evaluation/twin_evaluation.py"
PROMPT_STEMS = ["vangogh", "other_artists", "art_styles", "objects", "nature"]


def quoted_numbers(doc, pattern):
    """Every number `pattern`'s group captures in `doc` (whitespace runs read as one space, so a claim may
    wrap; thousands separators dropped); a pattern that matches nothing fails the test."""
    with open(os.path.join(REPO, doc), encoding="utf-8") as f:
        text = re.sub(r"\s+", " ", f.read())
    found = [int(m.replace(",", "")) for m in re.findall(pattern, text)]
    if not found:
        pytest.fail(f"{doc}: no text matches {pattern!r}; the claim was reworded or moved: update CLAIMS in "
                    "tests/test_docs.py")
    return found


# ----------------------------------------------------------------------------- what the code gives
@functools.cache
def shapes(path):
    """{name: shape} of a safetensors file, from its header (no weights read)."""
    with safe_open(os.path.join(REPO, path), "np") as f:
        return {k: f.get_slice(k).get_shape() for k in f.keys()}


def tensors(path):
    return lambda: len(shapes(path))


def parameters(path):
    return lambda: sum(math.prod(s) for s in shapes(path).values())


def head_classes(head):
    """Outputs of a head of the bundled classifier."""
    return lambda: shapes(CLASSIFIER)[f"{head}.weight"][0]


@functools.cache
def architecture_counts(name):
    return count_parameters(name)


def esd_x(architecture, key):
    """esd-x's tensors or parameters on a real-size UNet, counted on the meta device."""
    return lambda: architecture_counts(architecture)["esd-x"][key]


@functools.cache
def concept_tests(world):
    """{category: tests} of the concept-impact assessment on prompts/ (toy_*.csv or the real SD files)."""
    return {category: len(rows) for category, _, _, rows in load_tests(os.path.join(REPO, "prompts"), world)}


def all_concept_tests(world=TOY):
    return lambda: sum(concept_tests(world).values())


def category_tests(category):
    return lambda: concept_tests(TOY)[category]


def prompt_rows(name):
    return lambda: len(read_prompt_csv(os.path.join(REPO, "prompts", name)))


@functools.cache
def defaults(script, *required):
    """The flags of an entry script (a path) or a package module, as parsed with nothing but `required`."""
    parse_args = load_script(script).parse_args if script.endswith(".py") else toy_inpainting_quality.parse_args
    return parse_args(list(required))


def default(script, flag):
    return lambda: getattr(defaults(script), flag)


def collateral_phrasings():
    args = defaults(COLLATERAL)
    return len(phrasings.unseen_phrasings(args.per_style, args.seed, args.kinds))


def collateral_kinds():
    return len(defaults(COLLATERAL).kinds)


def possible_phrasings(*kinds):
    return lambda: len(phrasings.every_phrasing(kinds=kinds or tuple(phrasings.KINDS)))


def twin_pairs():
    args = defaults(TWIN, "--erasures", ESD_X)
    return len(phrasings.twin_pairs(args.concept, args.seed, args.kinds)) * args.seeds


def unseen_artist_phrasings():
    return sum(len(phrasings.TEMPLATES[k]["artist"]) for k in phrasings.STYLED_KINDS)


def grid_masks():
    return len(masks.mask_names())


def heldout_masks():
    return len(masks.heldout_masks(64)[1])


def all_masks():
    return len(evaluation_masks(64, 0)[1])


def neutral_images(script):
    return lambda: len(defaults(script).subjects)


def spatial_cases():
    return neutral_images(SPATIAL)() * all_masks()


def inpainting_regions():
    return len(world.STYLES) * neutral_images("toy_inpainting_quality")() * all_masks()


def concept_images():
    args = defaults(ATTACKS)
    return args.pairs * args.pair_seeds


def preset(name, key):
    return lambda: recipes.PRESETS[name][key]


def preset_pattern(k):
    """The presets' sizes as quoted, "(5 x 10, 20 x 100, 100 x 500 prompts x iterations", the k-th number captured."""
    numbers = [r"(\d+)" if i == k else r"\d+" for i in range(6)]
    return r"\(" + ", ".join(f"{a} x {b}" for a, b in zip(numbers[::2], numbers[1::2])) + " prompts x iterations"


def recommended_scaled_iterations():
    return recipes.RECIPES["grid"]["recommended"].presets["scaled"]["iterations"]


def toy_config(path, key, less=0):
    """A value of a JSON file of the bundled toy SD, less `less`."""
    def value():
        with open(os.path.join(REPO, "models/toyart-sd", path), encoding="utf-8") as f:
            return json.load(f)[key] - less
    return value


@functools.cache
def vocabulary():
    with open(os.path.join(REPO, "models/toyart-sd/tokenizer/vocab.json"), encoding="utf-8") as f:
        return list(json.load(f))


def vocabulary_size():
    return len(vocabulary())


def byte_symbols():
    """Tokens of one symbol, bare or word-final (CLIP's 256 bytes, each both ways)."""
    return sum(len(t.removesuffix("</w>")) == 1 for t in vocabulary())


# (doc, pattern whose group is the quoted number, what the number is, how the code gives it)
CLAIMS = [
    # tensors and parameters
    ("models/README.md", r"the reference ESD: (\d+) tensors", f"tensors in {ESD_X}", tensors(ESD_X)),
    ("models/README.md", r"the reference ESD: \d+ tensors, ([\d,]+) parameters", f"parameters in {ESD_X}",
     parameters(ESD_X)),
    ("original_esd/README.md", r"esd-x, (\d+) tensors", f"tensors in {ESD_X}", tensors(ESD_X)),
    ("original_esd/README.md", r"esd-x, \d+ tensors, ([\d,]+) parameters", f"parameters in {ESD_X}",
     parameters(ESD_X)),
    *[("docs/results.md", pattern, f"{what} in {path}", count(path))
      for path in (ESD_X, GRID) for pattern, what, count in [
          (r"the (\d+) cross-attention tensors esd-x selects", "tensors", tensors),
          (r"esd-x selects on the toy UNet \(([\d,]+) parameters\)", "parameters", parameters)]],
    ("docs/results.md", r"esd-x trains \*\*(\d+) tensors", "esd-x tensors of SD 1.4", esd_x("sd14", "tensors")),
    ("docs/results.md", r"esd-x trains \*\*\d+ tensors = ([\d,]+) parameters", "esd-x parameters of SD 1.4",
     esd_x("sd14", "parameters")),
    ("docs/real_size.md", r"ESD-x \((\d+) tensors", "esd-x tensors of SDXL", esd_x("sdxl", "tensors")),
    ("docs/real_size.md", r"ESD-x \(\d+ tensors, ([\d,]+) parameters\)", "esd-x parameters of SDXL",
     esd_x("sdxl", "parameters")),
    # the concept-impact tests and the prompt CSVs
    ("README.md", r"# (\d+) tests: UA, IRA, CRA", "concept-impact tests on real SD", all_concept_tests(REAL)),
    ("README.md", r"\((\d+) concept-impact tests x 2 seeds\)", "concept-impact tests", all_concept_tests()),
    ("docs/results.md", r"(\d+) tests x 2 seeds", "concept-impact tests", all_concept_tests()),
    ("docs/reproduce.md", r"the (\d+) concept-impact tests", "concept-impact tests", all_concept_tests()),
    ("evaluation/README.md", r"\.concept_impact` \(the (\d+) tests\)", "concept-impact tests", all_concept_tests()),
    ("evaluation/README.md", r"the (\d+) tests in five categories", "concept-impact tests", all_concept_tests()),
    *[("evaluation/README.md", rf"five categories \([^)]*\b{label} (\d+)", f"concept-impact tests: {category}",
       category_tests(category))
      for label, category in [("target", "target concept"), ("other artists", "other artists"),
                              ("art styles", "art styles"), ("objects", "general objects"),
                              ("nature", "nature scenes")]],
    *[("prompts/README.md", rf"\| `{re.escape(name)}` \| [^|]* \| (\d+) \|", f"rows of prompts/{name}",
       prompt_rows(name)) for stem in PROMPT_STEMS for name in (f"{stem}.csv", f"toy_{stem}.csv")],
    # phrasings and twin pairs
    ("README.md", r"Unseen: (\d+) phrasings", f"phrasings of {COLLATERAL}", collateral_phrasings),
    ("evaluation/README.md", r"\(`--per_style (\d+)`: \d+ phrasings", f"{COLLATERAL} --per_style",
     default(COLLATERAL, "per_style")),
    ("evaluation/README.md", r"\(`--per_style \d+`: (\d+) phrasings", f"phrasings of {COLLATERAL}",
     collateral_phrasings),
    ("docs/attacks.md", r"with (\d+) phrasings per model", f"phrasings of {COLLATERAL}", collateral_phrasings),
    ("docs/attacks.md", r"phrasings per model \((\d+) kinds", f"kinds of {COLLATERAL}", collateral_kinds),
    ("docs/results.md", r"collateral_evaluation\.py`, (\d+) phrasings\)", f"phrasings of {COLLATERAL}",
     collateral_phrasings),
    ("prompts/README.md", r"`every_phrasing\(\)`, ([\d,]+) strings", "phrasings.every_phrasing()",
     possible_phrasings()),
    ("prompts/README.md", r"of the ([\d,]+) `out_of_vocabulary` strings", "out_of_vocabulary phrasings",
     possible_phrasings("out_of_vocabulary")),
    ("docs/twin.md", r"\((\d+) pairs: the toy world", f"pairs of {TWIN}", twin_pairs),
    ("docs/twin.md", r"(\d+) held-out pairs, one seed", f"pairs of {TWIN}", twin_pairs),
    ("docs/twin.md", r"`twin_evaluation\.py`, (\d+) pairs\)", f"pairs of {TWIN}", twin_pairs),
    ("evaluation/README.md", r"(\d+) held-out \(prompt, twin\) pairs", f"pairs of {TWIN}", twin_pairs),
    ("docs/twin.md", r"the toy world's (\d+) held-out artist phrasings", "world.ARTIST_TEMPLATES_HELDOUT",
     lambda: len(world.ARTIST_TEMPLATES_HELDOUT)),
    ("docs/twin.md", r"the (\d+) of the collateral set's unseen kinds", "artist templates of the unseen kinds",
     unseen_artist_phrasings),
    ("docs/twin.md", r"unseen kinds, x (\d+) subjects", "world.SUBJECTS", lambda: len(world.SUBJECTS)),
    # masks and regions
    ("evaluation/README.md", r"inpainting in the (\d+) grid masks", "grid masks", grid_masks),
    ("evaluation/README.md", r"grid masks and (\d+) held-out ones", "held-out masks", heldout_masks),
    ("docs/results.md", r"inpaints (\d+) neutral images", f"{SPATIAL} --subjects", neutral_images(SPATIAL)),
    ("docs/results.md", r"neutral images in the (\d+) grid masks", "grid masks", grid_masks),
    ("docs/results.md", r"grid masks and (\d+) held-out masks", "held-out masks", heldout_masks),
    ("docs/results.md", r"\((\d+) cases per model and prompt\)", f"{SPATIAL} subjects x masks", spatial_cases),
    ("docs/twin.md", r"\(all (\d+) masks", "regions.evaluation_masks", all_masks),
    ("docs/twin.md", r"all \d+ masks, and the (\d+) held-out ones", "held-out masks", heldout_masks),
    ("docs/twin.md", r"\((\d+) neutral photos x \d+ masks", f"{SPATIAL} --subjects", neutral_images(SPATIAL)),
    ("docs/twin.md", r"neutral photos x (\d+) masks", "regions.evaluation_masks", all_masks),
    ("docs/twin.md", r"the (\d+) held-out masks are shapes", "held-out masks", heldout_masks),
    *[(doc, pattern, what, count) for doc in ("docs/toy_world.md", "models/toyart-sd-inpainting/README.md")
      for pattern, what, count in [
          (r"(\d+) regions: \d+ styles", "toy_inpainting_quality styles x photos x masks", inpainting_regions),
          (r"regions: (\d+) styles", "world.STYLES", lambda: len(world.STYLES)),
          (r"styles x (\d+) photos", "toy_inpainting_quality --subjects", neutral_images("toy_inpainting_quality")),
          (r"photos x (\d+) masks", "regions.evaluation_masks", all_masks)]],
    # attack_evaluation.py's images and prompts
    ("docs/attacks.md", r"`none` is the (\d+) concept prompts", f"{ATTACKS} --pairs x --pair_seeds", concept_images),
    ("docs/attacks.md", r"The (\d+) concept images take", f"{ATTACKS} --pairs x --pair_seeds", concept_images),
    *[(doc, pattern, f"{ATTACKS} --{flag}", default(ATTACKS, flag)) for doc, pattern, flag in [
        ("docs/attacks.md", r"before any attack: (\d+) trainer phrasings", "pairs"),
        ("docs/attacks.md", r"trainer phrasings x (\d+) seeds", "pair_seeds"),
        ("docs/attacks.md", r"prompt attacks use (\d+) images per kind", "per_kind"),
        ("prompts/README.md", r"`--per_kind` \((\d+)\)", "per_kind"),
        ("docs/attacks.md", r"It learns from (\d+) of the base model's own images", "inversion_images"),
        ("docs/attacks.md", r"(\d+) adversarial embeddings are put", "soft_tokens"),
        ("docs/attacks.md", r"in front of each of (\d+) concept prompts", "soft_prompts"),
        ("docs/attacks.md", r"ASR is measured on (\d+) seeds per prompt", "soft_eval_seeds"),
        ("evaluation/README.md", r"`soft_prompt`: (\d+) adversarial embeddings", "soft_tokens"),
        ("evaluation/README.md", r"adversarial embeddings before (\d+) concept prompts", "soft_prompts"),
        ("evaluation/README.md", r"a token \((\d+) vectors\)", "inversion_vectors"),
        ("README.md", r"soft prompt: (\d+) optimised embeddings", "soft_tokens")]],
    # grid erasure's presets
    *[("inpainting_erasure/README.md", preset_pattern(k), f"recipes.PRESETS {name} {key}", preset(name, key))
      for k, (name, key) in enumerate((name, key) for name in ("basic", "efficient", "scaled")
                                      for key in ("num_prompts", "iterations"))],
    ("inpainting_erasure/README.md", r"scaled: (\d+) with the recommended recipe",
     "the recommended grid recipe's scaled iterations", recommended_scaled_iterations),
    # the toy model and its judge
    ("docs/toy_world.md", r"in CLIP's order: (\d+) tokens", "entries of the toy vocab.json", vocabulary_size),
    ("models/toyart-sd/README.md", r"pruned to (\d+) tokens", "entries of the toy vocab.json", vocabulary_size),
    ("docs/toy_world.md", r"It keeps all (\d+) byte-level symbols", "one-symbol tokens of the toy vocab.json",
     byte_symbols),
    ("docs/toy_world.md", r"Its `model_max_length` is (\d+)", "model_max_length of the toy tokenizer",
     toy_config("tokenizer/tokenizer_config.json", "model_max_length")),
    *[(doc, pattern, f"{key} of the toy text encoder", toy_config("text_encoder/config.json", key))
      for doc, pattern, key in [
          ("docs/toy_world.md", r"CLIP text encoder \((\d+) layers", "num_hidden_layers"),
          ("docs/toy_world.md", r"CLIP text encoder \(\d+ layers, width (\d+)\)", "hidden_size"),
          ("models/toyart-sd/README.md", r"CLIPTextModel, (\d+) layers", "num_hidden_layers"),
          ("models/toyart-sd/README.md", r"CLIPTextModel, \d+ layers, width (\d+)", "hidden_size"),
          ("models/toyart-sd/README.md", r"width \d+, (\d+) positions", "max_position_embeddings"),
          ("docs/attacks.md", r"toy text encoder: (\d+) layers", "num_hidden_layers"),
          ("docs/attacks.md", r"toy text encoder: \d+ layers, (\d+) wide", "hidden_size"),
          ("docs/twin.md", r"The toy text encoder is (\d+)-d", "hidden_size"),
          ("docs/twin.md", r"The toy text encoder is \d+-d with (\d+) tokens", "max_position_embeddings")]],
    *[(doc, pattern, "max_position_embeddings of the toy text encoder less its start and end tokens",
       toy_config("text_encoder/config.json", "max_position_embeddings", less=2))
      for doc, pattern in [("docs/attacks.md", r"a (\d+)-token window"),
                           ("prompts/README.md", r"the toy text encoder keeps (\d+) tokens")]],
    ("models/README.md", r"style head \((\d+) classes\)", "outputs of the classifier's style_head",
     head_classes("style_head")),
    ("models/README.md", r"subject head \((\d+) classes\)", "outputs of the classifier's subject_head",
     head_classes("subject_head")),
]


@pytest.mark.parametrize("doc, pattern, what, count", CLAIMS, ids=[f"{doc}: {what}" for doc, _, what, _ in CLAIMS])
def test_the_docs_quote_the_counts_the_code_gives(doc, pattern, what, count):
    quoted = quoted_numbers(doc, pattern)
    true = count()
    assert quoted == [true] * len(quoted), f"{doc} quotes {quoted} ({pattern!r}) for {what}; the code gives {true}"
