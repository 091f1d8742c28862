"""The erasure that keeps the picture: neutral twins, the twin target (ESD and grid), the closed-form
twin map, the paired twin distance and the evaluation that reports it."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import assert_failed_in_one_line, run

from spatial_erasure.erasure_file import read_erasure
from spatial_erasure.evaluation.substitutes import paired_distance, style_excess
from spatial_erasure.models import MODELS_DIR, load_pipeline
from spatial_erasure.prompts import TOY_TEMPLATES, encode, neutral_twin, twin_of

ESD_X = str(MODELS_DIR / "esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors")


def test_a_twin_is_the_prompt_without_its_artist():
    assert neutral_twin("Vincent van Gogh", "Vincent van Gogh") == "", "the bare concept's twin is the empty prompt"
    assert neutral_twin("a painting by Claude Monet", "Claude Monet") == "a painting"
    assert neutral_twin("Claude Monet's boat", "claude monet") == "boat", "case-insensitive"
    assert twin_of("a drawing of a {subject} by {style}") == "a drawing of a {subject}"
    assert twin_of("by {artist}, a painting of a {subject}") == "a painting of a {subject}"
    assert twin_of("{style}: {subject}.") == "{subject}."
    from spatial_erasure.errors import InputError
    with pytest.raises(InputError, match="does not name"):
        neutral_twin("a painting of a house", "Claude Monet")
    with pytest.raises(ValueError, match="names no"):
        twin_of("a photo of a {subject}")


def test_twin_pairs_are_unseen_and_name_the_concept_only_in_the_prompt():
    from spatial_erasure.phrasings import HELD_OUT_KINDS, normalise, training_prompts, twin_pairs
    pairs = twin_pairs("Claude Monet")
    assert len(pairs) == 180, len(pairs)
    assert {p.kind for p in pairs} == set(HELD_OUT_KINDS), len(pairs)
    assert all("monet" in p.prompt.lower() and "monet" not in p.twin.lower() and p.subject.lower() in p.twin.lower()
               for p in pairs)
    known = training_prompts()
    unseen = [p for p in pairs if p.kind != "heldout"]
    assert not [p.prompt for p in unseen if normalise(p.prompt) in known], "no trainer or evaluation uses them"
    trained = twin_pairs("Claude Monet", kinds=["trained"])
    assert {(p.prompt.replace(p.subject, "{subject}").replace("Claude Monet", "{concept}"),
             p.twin.replace(p.subject, "{subject}")) for p in trained} == set(TOY_TEMPLATES)
    assert twin_pairs("Claude Monet", seed=3) != twin_pairs("Claude Monet", seed=4), "case changes follow the seed"


def test_align_tokens_pairs_shared_words_and_is_a_bijection():
    from spatial_erasure.twin_map import align_tokens
    eos = 9
    ids = [8, 1, 2, 3, 5, 6, 7, 9, 9, 9]         # BOS a painting of | by van gogh | EOS pad pad
    twin = [8, 1, 2, 3, 9, 9, 9, 9, 9, 9]        # BOS a painting of EOS pad ...
    pairs = align_tokens(ids, twin, eos)
    assert sorted(pairs) == list(range(10)), "every twin position exactly once"
    assert pairs[:4] == [0, 1, 2, 3], "shared words and the EOS pair up"
    assert pairs[7] == 4, "shared words and the EOS pair up"
    assert sorted(pairs[4:7]) == [5, 6, 7], "the concept's words take the twin's first padding"
    front = align_tokens([8, 5, 6, 4, 1, 9, 9, 9], [8, 2, 1, 9, 9, 9, 9, 9], eos)   # "X Y's house" / "a house"
    assert front[4] == 2, front
    assert front[5] == 3, front
    assert front[1] == 1, front   # house with house, EOS with EOS


def test_closed_form_twin_map_fits_what_it_can_and_sets_keys_and_values(tiny_folders):
    from spatial_erasure.selection import select_parameters
    from spatial_erasure.twin_map import residual, solve_twin_map, start_from_twin_map
    pipe = load_pipeline(tiny_folders["sd"])
    rows = [("a house by Vincent van Gogh", "a house")]
    m = solve_twin_map(pipe, rows, [""], null_weight=0.0, ridge=1e-9)
    assert residual(pipe, rows, m) < 1e-6, "one prompt's 24 tokens in 32 dimensions: an exact fit"
    kept = solve_twin_map(pipe, rows, ["", "a boat"], null_weight=100.0, keep_weight=100.0)
    null, boat = encode(pipe, [""]).emb[0].double(), encode(pipe, ["a boat"]).emb[0].double()
    assert (null @ kept.T - null).norm() < 0.05 * null.norm()
    assert (boat @ kept.T - boat).norm() < 0.05 * boat.norm()
    assert residual(pipe, rows, kept) > residual(pipe, rows, m), "keeping others costs fit"
    params = {n: p.detach().clone() for n, p in select_parameters(pipe.unet, "esd-x").items()}
    originals = {n: p.clone() for n, p in params.items()}
    names = start_from_twin_map(params, originals, m)
    assert names
    assert all(n.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) for n in names)
    for n in params:
        want = (originals[n].double() @ m).float() if n in names else originals[n]
        assert torch.allclose(params[n], want, atol=1e-6), n


def test_paired_distance_is_zero_on_the_twin_and_one_without_erasure():
    rng = np.random.default_rng(0)
    base, twin = rng.integers(0, 255, (2, 3, 8, 8, 3)).astype(np.uint8)
    assert paired_distance(twin, twin, base)["twin_distance"] == 0.0
    assert paired_distance(base, twin, base)["twin_distance"] == pytest.approx(1.0)
    half = ((base.astype(float) + twin) / 2)
    assert paired_distance(half, twin, base)["twin_distance"] == pytest.approx(0.5, abs=1e-9)
    region = np.zeros((3, 8, 8), bool)
    region[:, :4] = True
    mixed = np.where(region[..., None], twin, base)    # the twin inside the region, the concept outside
    assert paired_distance(mixed, twin, base, region)["twin_distance"] == 0.0
    assert style_excess({"a": 0.6, "b": 0.4}, {"a": 0.1, "b": 0.5, "c": 0.4}) == ("a", pytest.approx(0.5))
    assert style_excess({"x": 0.9, "b": 0.1}, {"b": 0.5}, concept="x")[0] == "b", "the concept is left out"


def test_esd_twin_target_trains_on_the_twins_trajectories(tiny_folders, tmp_path, monkeypatch):
    """The teacher is asked for eps(twin) and eps("") at x_t; the stream those move on is the twins':
    its states are the frozen model's guided trajectories on the twins."""
    from spatial_erasure import esd, objectives
    seen = []
    teacher = objectives.teacher_eps

    def spy(unet, scheduler, x, t, conds, params, extra=None):
        seen.append([c.emb.clone() for c in conds])
        return teacher(unet, scheduler, x, t, conds, params, extra)
    monkeypatch.setattr(objectives, "teacher_eps", spy)
    out = esd.main(esd.parse_args(["--erase_concept", "Vincent van Gogh", "--base_model", tiny_folders["sd"],
                                   "--iterations", "4", "--num_inference_steps", "4", "--stream_width", "2",
                                   "--variations", "3", "--preserve", "0", "--output",
                                   str(tmp_path / "twin.safetensors")]))
    meta = read_erasure(out)[1]
    assert meta["args"]["target"] == "twin", "the concept itself and 3 variations"
    assert meta["cases"] == 4, "the concept itself and 3 variations"
    pipe = load_pipeline(tiny_folders["sd"])
    twins = encode(pipe, meta["twins"]).emb
    null = encode(pipe, [""]).emb
    assert all(len(c) == 2 for c in seen), "eps(twin) and eps(\"\"): two teacher rows"
    assert all(((twins - c[0][:1]).abs().amax((1, 2)) < 1e-5).any() for c in seen), "the first row is a twin"
    assert all(torch.allclose(c[1], null.expand_as(c[1]), atol=1e-6) for c in seen)
    assert "" in meta["twins"], "the bare concept's twin is the empty prompt"
    assert meta["forward_equivalents_per_row"] > 0
    assert meta["args"]["null_weight"] == 1.0


def test_esd_twin_map_starts_from_the_closed_form(tiny_folders, tmp_path):
    from spatial_erasure import esd
    base = ["--erase_concept", "Vincent van Gogh", "--base_model", tiny_folders["sd"], "--iterations", "1",
            "--num_inference_steps", "4", "--variations", "2", "--preserve", "0"]

    def still(argv):                               # lr 0 (the command line refuses it): nothing but the start moves
        return read_erasure(esd.main(replace(esd.parse_args(argv), lr=0.0)))
    mapped = still(base + ["--twin_map", "--output", str(tmp_path / "m.safetensors")])
    plain = still(base + ["--output", str(tmp_path / "p.safetensors")])
    kv = [k for k in mapped[0] if k.endswith(("to_k.weight", "to_v.weight"))]
    assert all(not torch.equal(mapped[0][k], plain[0][k]) for k in kv), "lr 0: only the closed form moved them"
    assert all(torch.equal(mapped[0][k], plain[0][k]) for k in mapped[0] if k not in kv)
    assert 0 <= mapped[1]["twin_map_residual"] < 1
    r = run(["original_esd/esd_sd.py", "--erase_concept", "x", "--base_model", tiny_folders["sd"], "--twin_map",
             "--train_method", "esd-u", "--output", str(tmp_path)])
    assert r.returncode == 1, r.stderr[-2000:]
    assert "--twin_map" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_grid_twin_target_streams_the_twins_and_keeps_the_null_prompt(tiny_folders, tmp_path, monkeypatch):
    from spatial_erasure import grid_cases, grid_erasure
    from spatial_erasure.prompts import read_prompt_csv
    sources = []
    make = grid_cases.make_source

    def spy(kind, unet, scheduler, cond, *a, **kw):
        sources.append(cond.emb.clone())
        return make(kind, unet, scheduler, cond, *a, **kw)
    monkeypatch.setattr(grid_cases, "make_source", spy)
    out = grid_erasure.main(grid_erasure.parse_args(
        ["--base_model", tiny_folders["sd-inpaint"], "--preset", "basic", "--iterations", "2", "--num_prompts", "2",
         "--num_inference_steps", "4", "--preserve", "0", "--output", str(tmp_path / "g.safetensors")]))
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["args"]["target"] == "twin"
    assert report["args"]["negative_guidance"] == 0.0
    assert report["loss_parts_last50"]["null"] >= 0, report["loss_parts_last50"]
    rows = read_prompt_csv(str(tmp_path / "g.prompts.csv"))
    pipe = load_pipeline(tiny_folders["sd-inpaint"])
    neutral = encode(pipe, [r["neutral"] for r in rows]).emb
    first = sources[0]                                          # the concept source: one row per case
    assert all(((neutral - e[None]).abs().amax((1, 2)) < 1e-5).any() for e in first), "x_t follows the twins"
    assert read_erasure(out)[1]["args"]["recipe"] == "recommended"


@pytest.mark.slow
def test_twin_evaluation_end_to_end_on_the_toy_model(tmp_path):
    out = tmp_path / "twin"
    r = run(["evaluation/twin_evaluation.py", "--erasures", ESD_X, "--kinds", "heldout", "--num_inference_steps", "2",
             "--output", str(out)])
    assert r.returncode in (0, 1), r.stderr[-2000:]
    report = json.loads((out / "twin.json").read_text())
    base, esd = report["models"]["base"], report["models"]["esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x"]
    assert report["pairs"] == 12, "the base model is the unit"
    assert base["twin_distance"] == pytest.approx(1.0), "the base model is the unit"
    assert 0 <= esd["twin_distance"]
    assert 0 <= esd["concept_rate"] <= 1
    assert esd["fd_ratio"] > 0
    assert set(esd["by_kind"]) == {"heldout"}
    assert esd["top_excess_style"] in esd["styles"]
    assert any(k.endswith("twin_distance") for k in report["bars"]), report["bars"]
    assert (out / "twin.png").stat().st_size > 1000
    assert "twin_distance" in (out / "twin.md").read_text()
    bad = run(["evaluation/twin_evaluation.py", "--erasures", ESD_X, "--concept", "Rembrandt", "--output",
               str(tmp_path / "bad")])
    assert bad.returncode == 1
    assert "not a toy style" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_gauge_refuses_a_file_whose_concept_is_not_a_toy_artist(tmp_path):
    from spatial_erasure.erasure_file import save_erasure
    tensors, meta = read_erasure(ESD_X)
    path = str(tmp_path / "cat.safetensors")
    save_erasure(path, tensors, {**meta, "concept": "a cat"})
    r = run(["evaluation/gauge.py", path, "--output", str(tmp_path / "gauge")])
    assert_failed_in_one_line(r, "a cat", "twin_evaluation.py")
    assert not (tmp_path / "gauge").exists()


@pytest.mark.slow
def test_gauge_measures_a_text_to_image_file_globally_and_an_inpainting_file_in_masks(tmp_path):
    grid9 = str(MODELS_DIR / "grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors")
    r = run(["evaluation/gauge.py", ESD_X, grid9, "--kinds", "heldout", "--subjects", "house",
             "--output", str(tmp_path)])
    assert r.returncode in (0, 1), r.stderr[-2000:]
    table = r.stdout.split("| file | where |")[-1]           # the gauge's table, after the evaluations' own
    rows = [line for line in table.splitlines() if line.startswith(("| esd-", "| grid-"))]
    assert len(rows) == 2, r.stdout[-2000:]
    assert "| global |" in rows[0]
    assert "| masks (held-out) |" in rows[1]
    twin = json.loads((tmp_path / "Vincent_van_Gogh" / "global" / "twin.json").read_text())
    assert twin["pairs"] == 12
    spatial = json.loads((tmp_path / "Vincent_van_Gogh" / "masks" / "spatial.json").read_text())
    grid = next(s for s in spatial["summary"] if s["model"].startswith("grid-"))
    assert grid["pasted_maxdiff_outside"] == 0
    assert f"{grid['twin_distance_heldout_masks']:.3f}" in rows[1]
