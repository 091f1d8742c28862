#!/usr/bin/env bash
# Regenerate the README's figure from the bundled files (sets up .venv first; about a minute on 2 CPU cores):
# "a picture of a house by Vincent van Gogh" inpainted into five masks of one photo by the 9-channel toy
# model, the same model on the neutral twin "a picture of a house", and the bundled recommended grid erasure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
out=$(mktemp -d)
.venv/bin/python inpainting_erasure/inpaint.py --base_model models/toyart-sd-inpainting \
    --source_prompt "a realistic photo of a house" --mask 0 1 3 center 5 --prompt "a picture of a house by Vincent van Gogh" \
    --erasure models/grid-Vincent_van_Gogh-scaled-esd-x-recommended-inpainting.safetensors --output "$out"
mkdir -p docs/figures
cp "$out/before_after.png" docs/figures/erasure_in_mask.png.tmp.png
mv docs/figures/erasure_in_mask.png.tmp.png docs/figures/erasure_in_mask.png
rm -rf "$out"
echo "wrote docs/figures/erasure_in_mask.png"
