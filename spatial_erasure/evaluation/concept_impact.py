"""The 48-test concept-impact assessment (evaluation/concept_impact.py, evaluation/benchmark.py).

Five categories, one prompt CSV each: target concept, other artists, art styles, general objects,
nature scenes. `assess` draws every test's seeds with the base model and with an erasure applied,
asks a judge (evaluation.metrics.make_judge) for style and subject, and summarises per category: UA for the
target, IRA (style) for other artists and art styles, CRA (subject) for objects and nature, with
concept scores and base-vs-erased similarity.
"""
import os

import numpy as np

from .metrics import cached_generate, feature_distance, frechet_distance, lpips_distance, psnr
from ..erasure_file import erased
from ..errors import InputError
from ..prompts import read_prompt_csv
from ..worlds import TOY

# (category, prompt file stem, metric, judged by)
CATEGORIES = [("target concept", "vangogh", "UA", "style"), ("other artists", "other_artists", "IRA", "style"),
              ("art styles", "art_styles", "IRA", "style"), ("general objects", "objects", "CRA", "subject"),
              ("nature scenes", "nature", "CRA", "subject")]


def load_tests(folder, world):
    """[(category, metric, judged_by, rows)] from the world's (worlds.World) five CSVs; expected labels are
    required."""
    tests = []
    for category, stem, metric, by in CATEGORIES:
        path = os.path.join(folder, f"{world.csv_prefix}{stem}.csv")
        if not os.path.exists(path):
            raise InputError(f"prompt file {path} is missing; pass --prompts_dir with the five category CSVs "
                             "(prompts/ has them)")
        rows = read_prompt_csv(path)
        if by == "subject" and not all(r.get("expected_subject") for r in rows) or \
                by == "style" and not all(r.get("expected_style") for r in rows):
            raise InputError(f"{path}: every row needs an expected_{by} column value for the {category} category; "
                             "fill it in, or pass --prompts_dir prompts")
        tests.append((category, metric, by, rows))
    return tests


def assess(pipe, judge, tests, erasure, folder, concept, images_per_test, steps, guidance, thresholds, world=TOY):
    """Base and erased images for every test (cached in `folder`), judged. Returns a dict: rows (one
    per test), summary (one per category, pass/fail against thresholds {"UA", "IRA", "CRA"}),
    retain_fd (Frechet distance of the judge's features, base vs erased, all non-target tests),
    and base/after images with jobs [(category index, csv row)] in the same order. LPIPS where the world
    (worlds.World) has real-size images."""
    jobs = [(ci, r) for ci, (*_, rows) in enumerate(tests) for r in rows for _ in range(images_per_test)]
    k = np.arange(len(jobs)) % images_per_test
    prompts = [r["prompt"] for _, r in jobs]
    seeds = [r["evaluation_seed"] + int(j) for (_, r), j in zip(jobs, k)]
    kw = dict(num_inference_steps=steps, guidance_scale=guidance)
    base = cached_generate(pipe, prompts, seeds, folder, "base", desc="base", **kw)
    with erased(pipe, erasure):
        after = cached_generate(pipe, prompts, seeds, folder, "erased", desc="erased", **kw)
    vb, ve = judge(base), judge(after)
    label = {"style": (vb.styles(), ve.styles()), "subject": (vb.subjects(), ve.subjects())}
    sim_pix, sim_feat = psnr(base, after), feature_distance(vb.features, ve.features)
    sim_lpips = lpips_distance(base, after) if world.lpips else None

    rows, summary = [], []
    for ci, (category, metric, by, csv_rows) in enumerate(tests):
        for r in csv_rows:
            idx = [i for i, (c, row) in enumerate(jobs) if row is r]
            want = concept if metric == "UA" else r[f"expected_{by}"]
            hit = lambda which: float(np.mean([label[by][which][i] == want for i in idx]))  # noqa: E731
            rows.append({"category": category, "case": r["case_number"], "prompt": r["prompt"], "expected": want,
                         "base_score": float(vb.score(concept)[idx].mean()),
                         "erased_score": float(ve.score(concept)[idx].mean()),
                         "base_label": label[by][0][idx[0]], "erased_label": label[by][1][idx[0]],
                         "base_hit": hit(0), "erased_hit": hit(1), "first_image": idx[0],
                         "psnr": float(np.mean(np.minimum(sim_pix[idx], 99.0))),
                         "feature_distance": float(sim_feat[idx].mean()),
                         "lpips": None if sim_lpips is None else float(sim_lpips[idx].mean())})
        cat = [x for x in rows if x["category"] == category]
        base_acc, erased_acc = np.mean([x["base_hit"] for x in cat]), np.mean([x["erased_hit"] for x in cat])
        value = float(1 - erased_acc if metric == "UA" else erased_acc)
        summary.append({"category": category, "metric": metric, "tests": len(cat), "by": by,
                        "base": float(1 - base_acc if metric == "UA" else base_acc), "erased": value,
                        "threshold": thresholds[metric], "pass": bool(value >= thresholds[metric]),
                        "concept_score_base": float(np.mean([x["base_score"] for x in cat])),
                        "concept_score_erased": float(np.mean([x["erased_score"] for x in cat])),
                        "psnr": float(np.mean([x["psnr"] for x in cat])),
                        "feature_distance": float(np.mean([x["feature_distance"] for x in cat]))})
    retain = [i for i, (c, _) in enumerate(jobs) if tests[c][1] != "UA"]
    return {"rows": rows, "summary": summary, "base": base, "after": after, "jobs": jobs, "labels": label,
            "retain_fd": frechet_distance(vb.features[retain], ve.features[retain])}


def pooled(result, metric, model="erased"):
    """UA, IRA or CRA over every test of that metric's categories (10 + 10 tests count alike) for the
    base or the erased model."""
    metric_of = {c["category"]: c["metric"] for c in result["summary"]}
    hits = np.mean([r[f"{model}_hit"] for r in result["rows"] if metric_of[r["category"]] == metric])
    return float(1 - hits if metric == "UA" else hits)
