#!/usr/bin/env bash
# The one GPU check (about 6 minutes on an H100/H200): the GPU-marked tests, bench/real_size.py at native
# resolution (SD 1.4 at 512, SDXL at 1024; bf16, SDXL with gradient checkpointing), then the two timed
# runs of docs/real_size.md at SD-1.4 size, 512 px: ESD-x 200 iterations with stream, grid scaled 500 iterations;
# then SD3-medium at 1024 px, its measured peak beside bench/flow_memory.py's projection.
#
#   bash bench/gpu_check.sh --wheels    # HERE, once: fetch the wheel the GPU image lacks into .whl/
#   bash bench/gpu_check.sh             # THERE (the device tool: carry .whl); results in $OUT or results/bench/gpu
#
# The GPU image has torch, transformers and accelerate but not diffusers, and reaches no package index,
# so diffusers travels as a wheel. Nothing here is needed for CI or CPU work.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--wheels" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .whl "$(grep '^diffusers==' requirements.txt)"
  echo "gpu_check: wheels in .whl/ (carry it: run(command='bash bench/gpu_check.sh', carry=['.whl']))"
  exit 0
fi
RESULTS=${OUT:-results/bench/gpu}
mkdir -p "$RESULTS"
if ! python3 -c "import diffusers" 2>/dev/null; then
  if [ ! -d .whl ]; then
    echo "gpu_check: diffusers is not installed and no .whl/ was carried; run 'bash bench/gpu_check.sh --wheels' first" >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$RESULTS/gpu.txt"
python3 -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$RESULTS/gpu.txt"

step() { echo; echo "== $* ($(date +%T))"; }
step "GPU-marked tests"
python3 -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider 2>&1 | tee "$RESULTS/tests.txt"

step "real-size benchmark at native resolution, 10 iterations a cell"
python3 bench/real_size.py --device cuda --native --architectures sd14 sdxl --iterations 10 --num_prompts 4 \
  --sdxl_cells esd-x:stream,esd-x:sample --output "$RESULTS" || true      # exit 1 = a bar missed: keep going

step "SD-1.4 size, 512 px: ESD-x, 200 iterations, stream, bf16"
python3 original_esd/esd_sd.py --erase_concept "Vincent van Gogh" --base_model runs/real_size/sd14 \
  --xt_source stream --mixed_precision bf16 --device cuda --no-resume --output "$RESULTS/esd" 2>&1 | tail -n 2
step "SD-1.4 size, 512 px: grid erasure, scaled preset (100 prompts, 500 iterations), stream, bf16"
python3 inpainting_erasure/scaled_grid_erasure.py --base_model runs/real_size/sd14 --mixed_precision bf16 \
  --device cuda --no-resume --output "$RESULTS/grid/grid.safetensors" 2>&1 | tail -n 2
python3 - "$RESULTS" <<'EOF'
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
rows = []
for name, path, bar in [("ESD-x 200 it, stream", next((root / "esd").glob("*.json")), 15),
                        ("grid scaled 500 it, stream", root / "grid/grid.json", 45)]:
    r = json.loads(path.read_text())
    setup = sum(r.get(k, 0) for k in ("source_seconds", "warmup_seconds", "retain_warmup_seconds"))
    rows.append(f"| {name} | {r['train_seconds']:.1f} | {setup:.1f} | {r['peak_memory_mb']:.0f} | "
                f"{'MET' if r['train_seconds'] < bar else 'MISS'} (< {bar} s) |")
text = ("| run (SD-1.4 UNet, 512 px, bf16) | training s | setup s | peak MiB | bar |\n|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n")
(root / "timed_runs.md").write_text(text)
print(text)
EOF
step "SD3-medium at 1024 px, ESD-x stream, 10 iterations, bf16 + checkpointing; beside bench/flow_memory.py"
python3 bench/real_size.py --device cuda --native --architectures sd3-medium --iterations 10 --num_prompts 4 \
  --output "$RESULTS/sd3" || true
python3 bench/flow_memory.py --architectures sd3-medium flux-dev --output "$RESULTS/flow_memory" | tail -n 1
python3 - "$RESULTS" <<'EOF'
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
measured = {(r["method"], r["teacher"]): r for r in json.loads((root / "sd3/real_size.json").read_text())["rows"]
            if r["status"] == "ok"}
projected = {(r["method"], r["resolution"]): r for r in json.loads((root / "flow_memory/flow_memory.json").read_text())
             if r["architecture"] == "sd3-medium"}
lines = ["| SD3-medium, 1024 px | measured peak MiB | projected MiB |", "|---|---|---|"]
for (method, teacher), r in sorted(measured.items()):       # the ESD cell trains esd_sd3.py's default method
    p = projected[("esd-x-strict", 1024)]["total"] * 1024
    lines.append(f"| esd-x-strict, teacher {teacher} | {r['peak_MiB']:.0f} | {p:.0f}{' (one transformer)' if teacher == 'copy' else ''} |")
(root / "flow_memory_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "gpu_check: results in $RESULTS (real_size.md, timed_runs.md, sd3/, flow_memory_check.md, tests.txt, gpu.txt)"
