#!/bin/bash
# Reproduce docs/attacks.md on the toy model: train the erasure files its tables compare (those not
# bundled in models/), then the attack and collateral evaluations for Van Gogh and Claude Monet, then
# the benchmark that joins them. A file or result already there is reused, so a rerun resumes.
# About two hours on the 2-core CPU (two jobs at once, OMP_NUM_THREADS=1 each; 50 minutes before issue 17 added
# its eight variants).
#
#     bash scripts/robustness.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
C=results/benchmark/checkpoints      # where evaluation/benchmark.py trains and finds its methods
mkdir -p "$C"

train() {  # FILE SCRIPT ARGS...: run the training script unless FILE exists
  local file=$1; shift
  [ -f "$file" ] || "$PY" "$@" --output "$file"
}

"$PY" evaluation/benchmark.py        # trains ESD-x-strict, ESD-u, grid basic and efficient and issue 17's variants
                                     # (+preserve, +robust) for Van Gogh into $C
for concept in "Vincent van Gogh" "Claude Monet"; do
  n=${concept// /_}
  train "$C/esd-$n-esd-x-stream.safetensors" original_esd/esd_sd.py --erase_concept "$concept" \
    --xt_source stream --stream_width 8 --lr 4e-4
  train "$C/grid-$n-efficient-esd-x.safetensors" inpainting_erasure/grid_erasure.py --preset efficient \
    --concept "$concept"
done
train "$C/esd-Claude_Monet-esd-x-sample.safetensors" original_esd/esd_sd.py --erase_concept "Claude Monet"
train "$C/grid-Claude_Monet-scaled-esd-x.safetensors" inpainting_erasure/scaled_grid_erasure.py \
  --concept "Claude Monet"
# issue 17's variants for Monet, with the benchmark's own flags and names (evaluation/benchmark.py METHODS)
"$PY" evaluation/benchmark.py --concept "Claude Monet" --train_only --methods "ESD-x +preserve" \
  "ESD-x +preserve +robust" "grid scaled +preserve +twin" "grid scaled +preserve +twin +robust"

VG=(models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors
    "$C/esd-Vincent_van_Gogh-esd-x-stream.safetensors"
    "$C/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-strict.safetensors"
    "$C/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-u.safetensors"
    "$C/grid-Vincent_van_Gogh-basic-esd-x.safetensors"
    "$C/grid-Vincent_van_Gogh-efficient-esd-x.safetensors"
    models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors
    "$C/esd-Vincent_van_Gogh-esd-x-preserve.safetensors" "$C/esd-Vincent_van_Gogh-esd-x-robust.safetensors"
    "$C/grid-Vincent_van_Gogh-scaled-esd-x-preserve.safetensors"
    "$C/grid-Vincent_van_Gogh-scaled-esd-x-robust.safetensors")
MONET=("$C/esd-Claude_Monet-esd-x-sample.safetensors" "$C/esd-Claude_Monet-esd-x-stream.safetensors"
       "$C/grid-Claude_Monet-efficient-esd-x.safetensors" "$C/grid-Claude_Monet-scaled-esd-x.safetensors"
       "$C/esd-Claude_Monet-esd-x-preserve.safetensors" "$C/esd-Claude_Monet-esd-x-robust.safetensors"
       "$C/grid-Claude_Monet-scaled-esd-x-preserve.safetensors" "$C/grid-Claude_Monet-scaled-esd-x-robust.safetensors")
export OMP_NUM_THREADS=1             # two evaluations at once, one core each
"$PY" evaluation/attack_evaluation.py --erasures "${VG[@]}" &
"$PY" evaluation/attack_evaluation.py --concept "Claude Monet" --erasures "${MONET[@]}"
wait
"$PY" evaluation/collateral_evaluation.py --erasures "${VG[@]}" &
"$PY" evaluation/collateral_evaluation.py --concept "Claude Monet" --erasures "${MONET[@]}"
wait
"$PY" evaluation/benchmark.py        # now with the attack and collateral columns
