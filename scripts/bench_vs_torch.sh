#!/usr/bin/env bash
# ladder against PyTorch + PEFT, back to back on this machine, for every mode and shape: the
# ratio table of the README's performance section. Only ratios measured in one run count
# (these machines vary ~2× between sessions). Run on a quiet machine:
#   cargo build --release && scripts/bench_vs_torch.sh [threads]
# Environment: SHAPES (default "bench-30m smollm2-135m qwen2.5-0.5b"), MODES ("lora full dpo"),
# BATCH / SEQ (default 8 × 256, and 4 × 256 for qwen2.5-0.5b, as issue 21's table), STEPS
# (timed, default 5), MODES_0_5B (default "lora full", the 0.5B row's modes),
# ANCHOR (torch_anchor.py; default ../shared/bench/torch_anchor.py), LADDER_BIN.
set -euo pipefail
threads=${1:-2}
bin=${LADDER_BIN:-target/release/ladder}
anchor=${ANCHOR:-../shared/bench/torch_anchor.py}
seq=${SEQ:-256}
echo "| shape | mode | batch × seq | ladder tok/s | PyTorch tok/s | ratio | peak RSS MiB ladder / PyTorch | RSS ratio |"
echo "|---|---|---|---|---|---|---|---|"
for shape in ${SHAPES:-bench-30m smollm2-135m qwen2.5-0.5b}; do
  batch=${BATCH:-8}
  modes=${MODES:-lora full dpo}
  if [ "$shape" = qwen2.5-0.5b ]; then
    batch=${BATCH:-4}
    modes=${MODES_0_5B:-${MODES:-lora full}}
  fi
  for mode in $modes; do
    ours=$("$bin" bench --mode "$mode" --shape "$shape" --batch-size "$batch" --seq-len "$seq" \
      --steps "${STEPS:-5}" --threads "$threads" 2>/dev/null | tail -1)
    theirs=$(python3 "$anchor" "$mode" "$threads" --shape "$shape" --batch "$batch" --seq "$seq" 2>/dev/null | tail -1)
    python3 - "$shape" "$mode" "$ours" "$theirs" <<'PY'
import json, re, sys
shape, mode, ours, theirs = sys.argv[1:]
r = json.loads(ours)
t = dict(kv.split("=", 1) for kv in theirs.split() if "=" in kv)
tps, rss = float(t["tokens/s"]), float(t["peak_rss_mib"])
print(f"| {shape} | {mode} | {r['batch_size']} × {r['seq_len']} | {r['tokens_per_s']:.0f} | {tps:.0f} | "
      f"{r['tokens_per_s'] / tps:.2f} | {r['peak_rss_mib']:.0f} / {rss:.0f} | {r['peak_rss_mib'] / rss:.2f} |")
PY
  done
done
# The host under the table: ratios hold for the kind of CPU they were measured on.
python3 - "$ours" "$threads" <<'PY'
import json, sys
h = json.loads(sys.argv[1])["host"]
print(f"\nHost: {h['cpu']}, {h['simd']}, {h['cpus']} CPUs; {sys.argv[2]} threads each side.")
PY
