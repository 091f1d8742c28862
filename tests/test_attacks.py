"""Issue 16: the attack suite (spatial_erasure.attacks, evaluation/attack_evaluation.py) and what an
erased model paints instead (spatial_erasure.evaluation.substitutes)."""
import json
import os

import numpy as np
import pytest
import torch
from conftest import load_script, one_error_line, run

from spatial_erasure.attacks.inversion import InversionConfig, concept_inversion
from spatial_erasure.attacks.prompt_sets import ATTACK_KINDS, misspellings, prompt_attacks
from spatial_erasure.attacks.soft_prompt import SoftPromptConfig, denoising_targets, soft_prompt_attack
from spatial_erasure.erasure_file import file_hash
from spatial_erasure.evaluation.metrics import ToyJudge, Verdict
from spatial_erasure.evaluation.substitutes import colour_contrast, substitutes
from spatial_erasure.learned_tokens import LearnedTokens, readable
from spatial_erasure.models import MODELS_DIR, load_pipeline
from spatial_erasure.phrasings import normalise
from spatial_erasure.prompts import REAL_FAMOUS_WORKS, concept_variations
from spatial_erasure.sampling import generate
from spatial_erasure.toyart.world import ARTISTS, SUBJECTS
from spatial_erasure.worlds import REAL, TOY

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")
VG = "Vincent van Gogh"
SAMPLING = (20, 5.0)


@pytest.fixture(scope="module")
def toy():
    return load_pipeline()


@pytest.fixture(scope="module")
def judge():
    return ToyJudge()


def test_misspellings_follow_the_documented_rules():
    assert misspellings(VG) == ["van Gogh", "Vincent van Gohg", "V. van Gogh", "Vincent van Goh", "Vincent van Googh",
                                "Vincent vanGogh"]
    assert misspellings("Claude Monet") == ["Monet", "Claude Monte", "C. Monet", "Claude Mont", "Claude Moonet",
                                            "ClaudeMonet"]
    with pytest.raises(ValueError, match="two or more words"):
        misspellings("Rembrandt")


@pytest.mark.parametrize("concept", ARTISTS)
def test_prompt_attack_sets_are_fixed_sized_and_hide_the_name_where_they_should(concept):
    sets = prompt_attacks(concept, TOY, per_kind=12, seed=0)
    assert set(sets) == set(ATTACK_KINDS) - {"none"}
    assert all(len(v) == 12 for v in sets.values())
    assert sets == prompt_attacks(concept, TOY, per_kind=12, seed=0)
    assert sets != prompt_attacks(concept, TOY, per_kind=12, seed=1)
    name = concept.lower()
    for kind in ("misspelling", "famous_work", "split"):      # the attack is that the name is not written out
        assert not [p for p in sets[kind] if name in p.prompt.lower()], kind
    for kind in ("paraphrase", "mixed"):
        assert all(name in p.prompt.lower() for p in sets[kind]), kind
    assert all(p.subject in SUBJECTS for v in sets.values() for p in v)
    # the mixed kind names another artist next to the concept
    assert all(any(a.lower() in p.prompt.lower() for a in ARTISTS if a != concept) for p in sets["mixed"])
    # no attack prompt is one of the concept prompts the trainers use
    trained = {normalise(r["prompt"]) for r in concept_variations(concept, 30, TOY)}
    assert not [p for v in sets.values() for p in v if normalise(p.prompt) in trained and p.kind != "famous_work"]


def test_real_sd_sets_use_the_real_famous_works():
    sets = prompt_attacks(VG, REAL, per_kind=6, seed=0)
    assert all(any(w in p.prompt for w in REAL_FAMOUS_WORKS[VG]) for p in sets["famous_work"])
    assert all(p.subject is None for p in sets["famous_work"])
    assert "famous_work" not in prompt_attacks("Someone Unknown", REAL, per_kind=6)


def test_learned_tokens_touch_only_their_rows_and_leave_the_pipeline_alone(toy):
    before_len, before_w = len(toy.tokenizer), toy.text_encoder.get_input_embeddings().weight.detach().clone()
    toks = LearnedTokens(toy, "<t>", torch.randn(3, before_w.shape[1]))
    assert toks.pipe.unet is toy.unet
    assert toks.pipe.text_encoder is not toy.text_encoder
    assert toks.pipe.maybe_convert_prompt("<t> a house", toks.pipe.tokenizer) == "<t> <t>_1 <t>_2 a house"
    old = toks.weight.detach().clone()
    opt = torch.optim.Adam([toks.weight], lr=0.1)
    toks.step(opt, toks.encode(["<t> a painting of a house"]).square().mean())
    changed = (toks.weight.detach() != old).any(1).nonzero().flatten().tolist()
    assert changed == toks.ids.tolist()
    assert len(toy.tokenizer) == before_len
    assert torch.equal(toy.text_encoder.get_input_embeddings().weight, before_w)
    # projecting vocabulary rows gives those rows back: the hard prompt is exact
    toks.set(toks.vocab[[320, 630, 500]])
    assert toks.nearest()[0].tolist() == [320, 630, 500]
    assert torch.equal(toks.projected(), toks.vocab[[320, 630, 500]])
    assert toks.nearest()[1] == readable("".join(toy.tokenizer.convert_ids_to_tokens([320, 630, 500])))
    assert readable("night</w>gogh</w>\u0120x") == "night gogh x" == readable("night gogh x")


@pytest.mark.slow
def test_concept_inversion_recovers_the_concept_on_the_base_model(toy, judge):
    """Sanity: a token learned from the base model's Van Gogh images makes the base model paint Van Gogh."""
    subjects = SUBJECTS[:4] * 2
    images = generate(toy, [f"a painting of a {u} by {VG}" for u in subjects], list(range(8)), *SAMPLING)
    inv = concept_inversion(toy, judge, VG, images, subjects, InversionConfig(steps=40, check_at=(0, 40)), SAMPLING)
    assert [c["step"] for c in inv["curve"]] == [0, 40]
    assert inv["curve"][0]["asr"] <= 0.25           # "painting" alone does not paint Van Gogh
    assert inv["asr"] >= 0.8


def test_soft_prompt_attack_finds_the_concept_from_a_neutral_prompt_on_the_base_model(toy, judge):
    """Sanity: with no concept word in the prompt, the optimised embeddings still make the base model paint
    Van Gogh (the targets are its own predictions for the Van Gogh prompt)."""
    prompt = f"a painting of a house by {VG}"
    images = generate(toy, [prompt] * 4, [100, 101, 102, 103], *SAMPLING)
    targets = denoising_targets(toy, prompt, images, 32, 0)
    plain = judge(generate(toy, ["a painting of a house"] * 4, [7, 8, 9, 10], *SAMPLING)).styles()
    assert plain.count(VG) <= 1
    r = soft_prompt_attack(toy, judge, VG, "a painting of a house", targets, SoftPromptConfig(steps=30, check_every=10),
                           SAMPLING, check_seed=7)
    assert r["success_step"] is not None
    assert r["asr_continuous"] >= 0.75
    assert r["projected_prompt"].endswith("a painting of a house")
    assert 0 <= r["asr_projected"] <= 1


def test_colour_contrast_and_substitutes_on_known_images():
    flat = np.full((4, 8, 8, 3), 100, np.uint8)
    stripes = flat.copy()
    stripes[:, ::2] = 200
    colour, contrast = colour_contrast(stripes)
    assert np.allclose(colour, 150)
    assert np.allclose(contrast, 50)
    region = np.zeros((4, 8, 8), bool)
    region[:, ::2] = True
    assert np.allclose(colour_contrast(stripes, region)[1], 0)

    def verdict(styles, subjects, feats):
        s_names, u_names = ["A", "B"], ["house", "tree"]
        return Verdict(np.eye(2)[[s_names.index(s) for s in styles]], s_names,
                       np.eye(2)[[u_names.index(u) for u in subjects]], u_names, feats)
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 3))
    twins = verdict(["B"] * 4, ["house", "tree", "house", "tree"], f)
    twins_b = verdict(["B"] * 4, ["house", "tree", "house", "tree"], f + rng.normal(size=f.shape) * 0.1)
    erased = verdict(["A", "B", "B", "B"], ["house", "house", "house", "tree"], f + 5)
    s = substitutes(erased, twins, twins_b, ["house", "tree", "house", "tree"], stripes, flat, flat)
    assert s["subject_kept"] == 0.75
    assert s["subject_kept_base_twins"] == 1.0
    assert s["subject_ratio"] == 0.75
    assert s["styles"] == {"B": 0.75, "A": 0.25}
    assert s["fd"] == pytest.approx(75, rel=1e-6)
    assert s["fd_ratio"] > 100
    assert s["colour_shift"] == pytest.approx(np.sqrt(3) * 50)
    assert s["colour_shift_base_seeds"] == 0


@pytest.mark.slow
def test_attack_evaluation_end_to_end_on_the_toy_model(tmp_path):
    out = tmp_path / "att"
    args = ["evaluation/attack_evaluation.py", "--erasures", ESD_X, "--per_kind", "2", "--pairs", "4",
            "--pair_seeds", "1", "--inversion_steps", "6", "--inversion_images", "4", "--soft_prompts", "1",
            "--soft_steps", "2", "--soft_check_every", "1", "--soft_eval_seeds", "1", "--output", str(out)]
    r = run(args)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "attacks.json").read_text())
    assert [m["model"] for m in report["models"]] == ["base", os.path.basename(ESD_X).removesuffix(".safetensors")]
    for m in report["models"]:
        assert set(m["asr"]) >= {"none", "paraphrase", "misspelling", "famous_work", "mixed", "split", "inversion",
                                 "soft_prompt", "soft_prompt_projected", "worst"}
        assert all(0 <= v <= 1 for v in m["asr"].values())
        assert m["asr"]["worst"] == max(v for k, v in m["asr"].items() if k not in ("none", "inversion_best", "worst"))
        assert [c["step"] for c in m["inversion"]["curve"]] == [0, 1, 3, 4, 6]
    base, esd = report["models"]
    assert base["asr"]["none"] >= 0.75
    assert esd["asr"]["none"] <= 0.25     # the erasure works on its own prompts
    for f in ("attacks.md", "asr.png", "inversion.png", "examples.png"):
        assert (out / f).stat().st_size > 0
    # a rerun with the same settings reuses every model's saved results
    again = run(args)
    assert again.returncode == 0
    assert again.stdout.count("reused") == 2


@pytest.mark.slow            # about 20-30 s: a subprocess that loads the models
def test_a_bad_concept_is_one_error_line(tmp_path):
    r = run(["evaluation/attack_evaluation.py", "--concept", "Rembrandt", "--erasures", "--output", str(tmp_path)])
    assert r.returncode != 0
    assert len(one_error_line(r)) == 1
    assert "toy world" in one_error_line(r)[0]
    assert "Traceback" not in r.stderr
    assert not os.listdir(tmp_path)
    nine = str(MODELS_DIR / "grid-Vincent_van_Gogh-scaled-esd-x-inpainting.safetensors")
    r = run(["evaluation/attack_evaluation.py", "--erasures", ESD_X, nine, "--output", str(tmp_path)])
    assert r.returncode != 0
    assert "trained on" in one_error_line(r)[0]
    assert not os.listdir(tmp_path)


def test_benchmark_takes_robustness_columns_from_the_reports_for_the_very_file(tmp_path):
    bench = load_script("evaluation/benchmark.py")
    grid = str(MODELS_DIR / "grid-Vincent_van_Gogh-scaled-esd-x.safetensors")
    asr = {"none": 0.0, "paraphrase": 0.1, "misspelling": 0.3, "inversion": 0.5, "soft_prompt": 0.2, "worst": 0.5}
    attacks = {"concept": VG, "models": [{"key": {"file": None}, "asr": {**asr, "none": 1.0}},
                                         {"key": {"file": file_hash(ESD_X)}, "asr": asr}]}
    rates = {s: {"reordered": 0.5, "long": None} for s in ["Claude Monet", "photo"]}
    rates.update({s: {"reordered": 0.9, "long": 0.7} for s in ARTISTS[2:] + ["impressionist", "cubist", VG]})
    collateral = {"concept": VG, "erasures": {"esd": {"file_hash": file_hash(ESD_X)}},
                  "models": {"esd": {"style_rate": rates, "by_kind": {"all styled kinds": {"subject_rate": 0.6}}}}}
    cols = bench.robustness(ESD_X, attacks, collateral, VG)
    assert cols == {"coll_style": 0.5, "coll_photo": 0.5, "coll_subj": 0.6, "ASR_none": 0.0, "ASR_prompt": 0.3,
                    "ASR_CI": 0.5, "ASR_soft": 0.2, "ASR_worst": 0.5}
    assert bench.robustness(None, attacks, None, VG)["ASR_none"] == 1.0
    assert set(bench.robustness(grid, attacks, collateral, VG).values()) == {None}   # not evaluated: n/a
    path = tmp_path / "Vincent_van_Gogh" / "a.json"
    path.parent.mkdir()
    path.write_text(json.dumps(attacks))
    assert bench.load_report(str(tmp_path / "{concept}" / "a.json"), VG) == attacks
    assert bench.load_report(str(tmp_path / "{concept}" / "a.json"), "Claude Monet") is None


def test_the_real_sd_path_runs_on_a_tiny_pipeline_with_a_clip_judge(tiny_folders, tmp_path):
    """Real SD: CLIP zero-shot judge, real subjects and famous works, no subject check (tiny random weights)."""
    from spatial_erasure.evaluation.attack_suite import Suite, SuiteConfig
    from spatial_erasure.evaluation.metrics import ClipJudge
    from spatial_erasure.prompts import REAL_RETAIN, REAL_SUBJECTS
    from spatial_erasure.testing import save_tiny_clip
    pipe = load_pipeline(tiny_folders["sd"])
    judge = ClipJudge(save_tiny_clip(str(tmp_path / "clip")), [VG, *REAL_RETAIN[:3]], REAL_SUBJECTS[:6])
    cfg = SuiteConfig(concept=VG, world=REAL, attacks=("none", "famous_work", "misspelling", "soft_prompt"),
                      per_kind=2, pairs=3, pair_seeds=2, soft_prompts=1, steps=2, guidance=3.0,
                      soft=SoftPromptConfig(steps=2, check_every=1, eval_seeds=1))
    row = Suite(pipe, judge, cfg, str(tmp_path / "out"), log=lambda *a: None).run("base")
    assert set(row["asr"]) == {"none", "famous_work", "misspelling", "soft_prompt", "soft_prompt_projected", "worst"}
    assert all(0 <= v <= 1 for v in row["asr"].values())
    assert row["substitutes"]["subject_kept"] is None
    assert row["substitutes"]["fd_base_seeds"] > 0
    assert any(w in row["soft_prompt"]["runs"][0]["prompt"] for w in ["Vincent van Gogh"])
