#!/usr/bin/env bash
# Makes the VLM demo's two starting checkpoints (committed under models/, recipes/demo-vlm.toml):
# Qwen2.5-VL models whose language models are the text demo's generalist and OCR specialist
# (models/, made by scripts/make_demo_models.sh) and whose vision tower is new and random — the
# way Qwen2.5-VL itself started from Qwen2.5. `ladder init --text-model` keeps the text model's
# weights and tokenizer, adds Qwen2-VL's vision tokens (random embeddings) and writes an image
# processor whose bounds give at most 256 image tokens a page (the demo's 480-pixel-wide pages
# are scaled to about 450×450). Both get the same vision tower (same seed). Seconds on a CPU;
# deterministic.
set -euo pipefail
cd "$(dirname "$0")/.."
ladder=${LADDER:-target/release/ladder}
for m in generalist ocr-specialist; do
    $ladder init --arch qwen2_5_vl --text-model "models/$m" --out "models/vlm-$m" --overwrite \
        --vision-hidden-size 64 --vision-layers 2 --vision-heads 2 --patch-size 14 \
        --max-pixels $((256 * 28 * 28)) --seed 0
done
