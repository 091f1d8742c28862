#!/usr/bin/env bash
# The main job on the bundled toy model (sets up .venv first), about 4-5 minutes on 2 CPU cores (231 s on a clean clone, 2026-11-29):
# erase Van Gogh inside masks (basic preset), inpaint a grid cell before/after with the bundled
# scaled checkpoint, measure the bundled ESD-x file's erasure and retention per style, and show
# base vs erased images side by side with their Van Gogh scores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
PY=.venv/bin/python
$PY inpainting_erasure/grid_erasure.py --preset basic --output results/demo/grid-basic.safetensors
$PY inpainting_erasure/inpaint.py --source_prompt "a realistic photo of a house" --mask center \
    --prompt "a picture of a house by Vincent van Gogh" \
    --erasure models/grid-Vincent_van_Gogh-scaled-esd-x.safetensors --output results/demo/inpaint
$PY evaluation/toy_erasure_rates.py --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors \
    --output results/demo/esd-x-rates
$PY evaluation/simple_vangogh_evaluation.py --prompt "a painting by Vincent van Gogh" --num_tests 5 \
    --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x.safetensors --output results/demo/simple_eval
echo "demo outputs in results/demo/"
