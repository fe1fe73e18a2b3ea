#!/usr/bin/env bash
# Tokens/s and peak memory of `ladder bench` as the sequence grows, 2,048 tokens per step
# (batch × seq-len), for the README's scaling table. Run on a quiet machine:
#   cargo build --release && scripts/bench_scaling.sh [threads] [more ladder bench flags]
# e.g. `scripts/bench_scaling.sh 2 --gradient-checkpointing`.
set -euo pipefail
threads=${1:-2}
shift || true
bin=${LADDER_BIN:-target/release/ladder}
echo "| mode | seq-len | batch | tokens/s | step s | peak RSS MiB |"
echo "|---|---|---|---|---|---|"
for mode in full lora; do
  for seq in 128 256 512 1024 2048; do
    batch=$((2048 / seq))
    line=$("$bin" bench --mode "$mode" --seq-len "$seq" --batch-size "$batch" --steps 2 --threads "$threads" "$@" 2>/dev/null | tail -1)
    python3 -c 'import json, sys
r = json.loads(sys.argv[1])
print("| %s | %d | %d | %.0f | %.2f | %.0f |" % (r["mode"], r["seq_len"], r["batch_size"], r["tokens_per_s"], r["step_s"], r["peak_rss_mib"]))' "$line"
  done
done
