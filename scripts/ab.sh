#!/usr/bin/env bash
# A/B of two ladder builds (or two environments) on one `ladder bench` command, interleaved in
# ABBA order so that a drift of the machine (these VMs swing by tens of percent within minutes)
# falls on both sides alike. Prints every run's tokens/s and peak RSS, then each side's mean and
# median and the per-round ratio B/A. A difference smaller than the spread of one side's runs
# is not a result.
#   scripts/ab.sh A_BIN B_BIN [ROUNDS] -- bench --mode lora --shape smollm2-135m --threads 2 --steps 2
# ROUNDS (default 3) ABBA rounds, so 2 × ROUNDS runs a side. Environment: A_ENV / B_ENV, extra
# `NAME=value` words put before each side's command (e.g. B_ENV="GLIBC_TUNABLES=...").
set -euo pipefail
a=$1 b=$2
shift 2
rounds=3
if [ "${1:-}" != -- ]; then rounds=$1; shift; fi
[ "${1:-}" = -- ] || { echo "usage: $0 A_BIN B_BIN [ROUNDS] -- LADDER_ARGS..." >&2; exit 2; }
shift
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT
run() { # side bin env...
  local side=$1 bin=$2 envs=$3 line
  shift 3
  # shellcheck disable=SC2086 # the env words split on purpose
  line=$(env $envs "$bin" "$@" 2>/dev/null | tail -1)
  echo "$side $line" >>"$runs"
  python3 -c 'import json,sys; r=json.loads(sys.argv[2]); print("%s %8.1f tok/s %7.0f MiB" % (sys.argv[1], r["tokens_per_s"], r["peak_rss_mib"]))' "$side" "$line"
}
for ((i = 0; i < rounds; i++)); do
  run A "$a" "${A_ENV:-}" "$@"
  run B "$b" "${B_ENV:-}" "$@"
  run B "$b" "${B_ENV:-}" "$@"
  run A "$a" "${A_ENV:-}" "$@"
done
python3 - "$runs" <<'PY'
import json, statistics, sys
runs = {"A": [], "B": []}
for line in open(sys.argv[1]):
    side, rest = line.split(" ", 1)
    runs[side].append(json.loads(rest)["tokens_per_s"])
for side, v in runs.items():
    print(f"{side}: mean {statistics.mean(v):.1f}, median {statistics.median(v):.1f}, min {min(v):.1f}, max {max(v):.1f} tok/s")
# Each ABBA round: B's two runs over A's two.
pairs = [(runs["B"][2*i] + runs["B"][2*i+1]) / (runs["A"][2*i] + runs["A"][2*i+1]) for i in range(len(runs["A"]) // 2)]
print("B/A per round:", ", ".join(f"{p:.3f}" for p in pairs), f"(mean {statistics.mean(pairs):.3f})")
PY
