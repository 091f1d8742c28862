#!/usr/bin/env bash
# The main job on the bundled toy model (sets up .venv first). For now: the toy model's quality
# check (samples grid + every bar); erasure and its evaluation are added here as they land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false
.venv/bin/python -m spatial_erasure.toyart.quality --out results/toyart_quality
