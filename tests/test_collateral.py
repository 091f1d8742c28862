"""Issue 16: phrasings no trainer used (spatial_erasure.phrasings) and the collateral evaluation on them."""
import glob
import json
import os

import numpy as np
import pytest
from conftest import REPO, one_error_line, run
from transformers import CLIPTokenizer

from spatial_erasure.evaluation.collateral import summarise
from spatial_erasure.models import MODELS_DIR, TOY_MODEL
from spatial_erasure.phrasings import (KINDS, STYLED_KINDS, Phrasing, collisions, every_phrasing, normalise,
                                       training_prompts, unseen_phrasings)
from spatial_erasure.prompts import concept_variations, read_prompt_csv, retain_prompts
from spatial_erasure.toyart.world import STYLES, SUBJECTS, caption_for
from spatial_erasure.worlds import REAL, TOY

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")


def trainer_prompts():
    """Prompts gathered the way each trainer and evaluation draws them, independently of training_prompts():
    toy-model captions (training and held-out draws), grid erasure's variations, twins and retain prompts,
    ESD's concept and null prompts, the prompt CSVs."""
    rng = np.random.default_rng(0)
    out = [caption_for(s, u, rng, heldout=h) for _ in range(60) for s in STYLES for u in SUBJECTS
           for h in (False, True)]
    for concept in STYLES:
        for world in (TOY, REAL):
            rows = concept_variations(concept, 200, world)
            out += [r["prompt"] for r in rows] + [r["neutral"] for r in rows] + retain_prompts(concept, world)
    out += STYLES + [""]
    for path in glob.glob(os.path.join(REPO, "prompts", "*.csv")) + glob.glob(str(MODELS_DIR / "*.prompts.csv")):
        out += [r[c] for r in read_prompt_csv(path) for c in ("prompt", "neutral") if r.get(c)]
    return out


def test_training_prompts_hold_every_prompt_the_trainers_draw():
    known = training_prompts()
    missing = {p for p in trainer_prompts() if normalise(p) not in known}
    assert not missing, f"training_prompts() misses {sorted(missing)[:5]}"


def test_no_phrasing_is_a_training_or_evaluation_prompt():
    drawn = trainer_prompts()
    exact = set(drawn)
    ws = {" ".join(p.split()) for p in drawn}
    every = every_phrasing()
    assert len(every) > 1000
    assert not [p for p in every if p.prompt in exact], "exact (case-sensitive) match with a trainer's prompt"
    assert not [p for p in every if " ".join(p.prompt.split()) in ws], "match after normalising whitespace"
    assert collisions(every, training_prompts()) == [], "match after lowercasing (the tokenizer lowercases)"


def test_collisions_catches_a_training_prompt_however_it_is_spaced_or_cased():
    sneaky = [Phrasing("  A painting of a HOUSE by  Vincent van Gogh ", "reordered", "Vincent van Gogh", "house"),
              Phrasing("a realistic photo of a boat", "synonyms", "photo", "boat"),
              Phrasing("a house, painted by Vincent van Gogh", "reordered", "Vincent van Gogh", "house")]
    assert collisions(sneaky, training_prompts()) == sneaky[:2]


def test_no_phrasing_tokenizes_like_a_training_prompt_in_the_toy_window():
    """The toy text encoder sees 24 tokens of a lowercased prompt: compare what it sees."""
    tok = CLIPTokenizer.from_pretrained(os.path.join(TOY_MODEL, "tokenizer"))
    seen = lambda texts: {tuple(ids) for ids in tok(list(texts), truncation=True).input_ids}  # noqa: E731
    every = every_phrasing()
    assert not seen(p.prompt for p in every) & seen(trainer_prompts())
    # what the judge expects is inside the window: the subject, and the style's words (photo: photo / realistic)
    for p, ids in zip(every, tok([p.prompt for p in every], truncation=True).input_ids):
        text = tok.decode(ids, skip_special_tokens=True)
        assert p.subject in text, (p.prompt, text)
        if p.style == "photo":
            assert "photo" in text or "realistic" in text, (p.prompt, text)
        elif p.style:
            assert p.style.lower() in text, (p.prompt, text)


def test_same_seed_same_phrasings_other_seed_others():
    a, b, c = unseen_phrasings(3, seed=1), unseen_phrasings(3, seed=1), unseen_phrasings(3, seed=2)
    assert a == b
    assert [p.prompt for p in a] != [p.prompt for p in c]
    # a subset of kinds gives the same phrasings as the full run (each cell has its own generator)
    assert unseen_phrasings(3, seed=1, kinds=["long"]) == [p for p in a if p.kind == "long"]


def test_every_kind_for_every_style_and_subject():
    ph = unseen_phrasings(2, seed=0)
    for kind in STYLED_KINDS:
        for style in STYLES:
            cell = [p for p in ph if p.kind == kind and p.style == style]
            assert len(cell) == 2, (kind, style, cell)
            assert len({p.prompt for p in cell}) == 2, (kind, style, cell)
    plain = [p for p in ph if p.kind == "no_style"]
    assert {p.style for p in plain} == {None}
    assert len(plain) == 2 * len(SUBJECTS)
    assert {p.subject for p in plain} == set(SUBJECTS)
    assert {p.kind for p in ph} == set(KINDS)
    # six templates per cell, every one before any repeats: six phrasings of a cell use six templates
    six = [p for p in unseen_phrasings(6, seed=0) if p.kind == "reordered" and p.style == "Claude Monet"]
    assert len({p.prompt.replace(p.subject, "X") for p in six}) == 6
    # no (template, subject) pair twice before all 36 are used: 6 per subject gives 36 different prompts
    assert len({p.prompt for p in unseen_phrasings(6, seed=0, kinds=["no_style"])}) == 36


def test_summarise_counts_hits_per_style_kind_and_no_style():
    ph = [Phrasing("a", "reordered", "Vincent van Gogh", "house"), Phrasing("b", "reordered", "Claude Monet", "boat"),
          Phrasing("c", "long", "Claude Monet", "car"), Phrasing("d", "no_style", None, "tree"),
          Phrasing("e", "no_style", None, "tree")]
    styles = ["photo", "Claude Monet", "cubist", "photo", "Claude Monet"]
    subjects = ["house", "car", "car", "tree", "boat"]
    base = ["Vincent van Gogh", "Claude Monet", "Claude Monet", "photo", "photo"]
    s = summarise(ph, styles, subjects, "Vincent van Gogh", base)
    assert s["style_rate"]["Claude Monet"] == {"reordered": 1.0, "long": 0.0}
    assert s["style_rate"]["cubist"]["reordered"] is None             # not run
    assert s["subject_rate"]["Claude Monet"] == {"reordered": 0.0, "long": 1.0}
    assert s["by_kind"]["reordered"] == {"target_rate": 0.0, "retain_rate": 1.0, "subject_rate": 0.5}
    assert s["by_kind"]["all styled kinds"]["retain_rate"] == 0.5
    assert s["no_style"]["styles"] == {"photo": 0.5, "Claude Monet": 0.5}
    assert s["no_style"]["same_style_as_base"] == 0.5
    assert s["no_style"]["subject_rate"]["tree"] == 0.5
    assert s["no_style"]["subject_rate"]["car"] is None


@pytest.mark.slow
def test_collateral_evaluation_end_to_end_on_the_toy_model(tmp_path):
    out = tmp_path / "coll"
    r = run(["evaluation/collateral_evaluation.py", "--erasures", ESD_X, "--per_style", "1", "--num_inference_steps",
             "4", "--output", str(out)], timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("collateral.json", "collateral.md", "collateral.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "collateral.json").read_text())
    assert report["phrasings"] == len(STYLED_KINDS) * len(STYLES) + len(SUBJECTS)
    assert len(report["rows"]) == report["phrasings"]
    stem = os.path.basename(ESD_X).removesuffix(".safetensors")
    assert list(report["models"]) == ["base", stem]
    for m in report["models"].values():
        for measure in ("style_rate", "subject_rate"):
            assert set(m[measure]) == set(STYLES)
            for style in STYLES:
                assert set(m[measure][style]) == set(STYLED_KINDS)
                assert all(0 <= v <= 1 for v in m[measure][style].values()), m[measure][style]
        assert 0 <= m["no_style"]["same_style_as_base"] <= 1
        assert sum(m["no_style"]["styles"].values()) == pytest.approx(1)
    assert report["models"]["base"]["no_style"]["same_style_as_base"] == 1.0
    # the table holds every style row and the rate cells of both models
    md = (out / "collateral.md").read_text()
    assert all(f"| {s} |" in md for s in STYLES)
    assert f"`{stem}`" in md
    assert len(os.listdir(out / "images")) == 2 * report["phrasings"]


def test_a_bad_concept_is_one_error_line_naming_the_choices(tmp_path):
    r = run(["evaluation/collateral_evaluation.py", "--concept", "Van Gog", "--output", str(tmp_path)], timeout=120)
    assert r.returncode != 0
    lines = one_error_line(r)
    assert len(lines) == 1, r.stderr
    assert "Van Gog" in lines[0], r.stderr
    assert "Vincent van Gogh" in lines[0], r.stderr
    assert "photo" in lines[0], r.stderr
    assert not os.listdir(tmp_path)
