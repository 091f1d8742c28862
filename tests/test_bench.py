"""bench/real_size.py's bookkeeping (the benchmark itself runs SD-size UNets: hours on a CPU, not a test):
which cells exist, and which cells of an earlier report --resume keeps."""
import json

from conftest import load_script


def load_bench():
    return load_script("bench/real_size.py")


def test_cells_skip_what_does_not_apply():
    bench = load_bench()
    cells = list(bench.cells(bench.parse_args([])))
    assert ("sd-inpaint", "esd-x", "stream", "originals") not in cells, "ESD is text-to-image: no 9-channel cell"
    assert not [c for c in cells if c[0] == "sdxl" and c[1] == "grid"], "grid erasure has no SDXL cell"
    assert [c for c in cells if c[0] == "sdxl"] == [("sdxl", "esd-x", "stream", "originals"),
                                                    ("sdxl", "esd-x", "stream", "copy")], \
        "SDXL on a CPU: ESD-x stream (and its two-UNet twin) only by default"
    sd14 = [c for c in cells if c[0] == "sd14"]
    assert len(sd14) == 8, f"sd14: 2 methods x (3 sources + two-UNet), got {sd14}"


def test_resume_keeps_only_finished_cells_at_the_same_settings(tmp_path):
    bench = load_bench()
    args = bench.parse_args(["--output", str(tmp_path), "--architectures", "sd14", "--methods", "esd-x"])
    row = {"architecture": "sd14", "method": "esd-x", "teacher": "originals", "resolution": 256, "steps": 10,
           "precision": "no"}
    rows = [{**row, "xt_source": "sample", "status": "ok", "s_per_it": 1.0},
            {**row, "xt_source": "cache", "status": "failed: killed (out of memory?)"},
            {**row, "xt_source": "stream", "status": "ok", "steps": 50}]          # another step count
    (tmp_path / "real_size.json").write_text(json.dumps({"args": {"device": "cpu"}, "rows": rows}))
    kept = bench.earlier_rows(args)
    assert list(kept) == [("sd14", "esd-x", "sample", "originals")], f"kept {list(kept)}"
    assert kept[("sd14", "esd-x", "sample", "originals")]["s_per_it"] == 1.0
    (tmp_path / "real_size.json").write_text(json.dumps({"args": {"device": "cuda"}, "rows": rows}))
    assert bench.earlier_rows(args) == {}, "a report from another device is not resumed"


def test_sd3_medium_has_the_esd_cells_of_a_large_model():
    bench = load_bench()
    args = bench.parse_args(["--architectures", "sd3-medium"])
    cells = list(bench.cells(args))
    assert cells == [("sd3-medium", "esd-x", "stream", "originals"), ("sd3-medium", "esd-x", "stream", "copy")], \
        "SD3 on a CPU: ESD-x stream and its two-transformer twin; no grid cell"
    cmd, res, steps, precision = bench.command(*cells[0], "runs/real_size/sd3-medium", "out", args)
    assert cmd[0] == "original_esd/esd_sd3.py" and "--gradient_checkpointing" in cmd
    assert (res, steps, precision) == (256, 10, "bf16")


def test_the_flow_memory_projection_adds_up_from_the_meta_device(tmp_path):
    """bench/flow_memory.py: each part recomputed here from the meta transformer's own tensors, and the
    table's verdicts follow from the totals (Flux.1-dev's esd-x-strict fits 80 GB in bf16, esd-all fits
    nothing: its trained state alone is 200 GiB)."""
    from spatial_erasure.architectures import build_transformer
    from spatial_erasure.selection import select_parameters
    bench = load_script("bench/flow_memory.py")
    transformer = build_transformer("sd3-medium")
    trained = sum(p.numel() for p in select_parameters(transformer, "esd-x-strict").values())
    total = sum(p.numel() for p in transformer.parameters())
    counts = {"total": total, "esd-x-strict": {"parameters": trained}}
    p = bench.project(counts, "sd3-medium", "esd-x-strict", 1024)
    tokens = 64 * 64 + 333
    assert p["frozen weights"] == 2 * (total - trained)
    assert p["trained tensors, grads, Adam, originals"] == 18 * trained
    assert p["checkpointed block inputs"] == 2 * tokens * 1536 * 24
    assert p["total"] == sum(v for k, v in p.items() if k != "total")
    eight_bit = bench.project(counts, "sd3-medium", "esd-x-strict", 1024, weights="8-bit")
    assert eight_bit["frozen weights"] == total - trained
    bench.main(bench.parse_args(["--output", str(tmp_path)]))
    rows = {(r["method"], r["resolution"]): r for r in json.loads((tmp_path / "flow_memory.json").read_text())}
    assert rows[("esd-x-strict", 512)]["80 GB"] == "bf16"
    assert rows[("esd-all", 1024)]["80 GB"] == rows[("esd-all", 1024)]["24 GB"] == "no"
    assert rows[("esd-x-strict", 512)]["24 GB"] != "bf16", "Flux-dev's bf16 weights alone are 22 GiB"
    assert "| flux-dev | esd-x | 512 |" in (tmp_path / "flow_memory.md").read_text()
