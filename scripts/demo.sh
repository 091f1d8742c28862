#!/usr/bin/env bash
# The main job on the bundled toy models (sets up .venv first), about 3-5 minutes on 2 CPU cores:
# train a grid (inpainting) erasure of Van Gogh on the 9-channel toy inpainting model (basic preset,
# recommended recipe), measure the bundled recommended ESD-x file's erasure and retention per style,
# compare base vs erased images with their Van Gogh scores, and end with the figure: Van Gogh inpainted
# into five masks by the base model, the base model on the neutral twin prompt, and the bundled scaled
# grid erasure, each region named by the toy classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
PY=.venv/bin/python
$PY inpainting_erasure/grid_erasure.py --preset basic --base_model models/toyart-sd-inpainting \
    --overwrite --output results/demo/grid-basic.safetensors
$PY evaluation/toy_erasure_rates.py --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-recommended.safetensors \
    --output results/demo/esd-x-rates
$PY evaluation/simple_vangogh_evaluation.py --prompt "a painting by Vincent van Gogh" --num_tests 5 \
    --erasure models/esd-Vincent_van_Gogh-from-Vincent_van_Gogh-esd-x-recommended.safetensors --output results/demo/simple_eval
$PY inpainting_erasure/inpaint.py --base_model models/toyart-sd-inpainting --source_prompt "a realistic photo of a house" \
    --mask 0 1 3 center 5 --prompt "a picture of a house by Vincent van Gogh" \
    --erasure models/grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors --output results/demo/erasure_in_mask
echo "demo outputs in results/demo/; the erasure inside masks: results/demo/erasure_in_mask/before_after.png"
