#!/usr/bin/env bash
# The one-shot GPU check: what a session lent the H200 machine (../shared/gpu-notes.md) runs in
# one command of at most 8 minutes, from a binary built here and carried over.
#
#   scripts/gpu-check.sh pack        # here: the CUDA build (scripts/setup-cuda-build.sh first),
#                                    # stripped and xz-compressed into target/gpu/ladder.xz
#   scripts/gpu-check.sh run         # there, e.g. via the device tool:
#       run(command="scripts/gpu-check.sh run", carry=["target/gpu/ladder.xz"], timeout_s=540)
#
# `run` does, each step under its own time limit:
#   1. nvidia-smi;
#   2. log-prob parity on the committed fixtures (Qwen2, Llama, a PEFT adapter) in f32 against
#      transformers' values in tests/fixtures/expected/logprobs.json;
#   3. five steps each of full SFT, LoRA SFT and LoRA DPO on the fixtures at the CUDA default,
#      bf16, with the SFT losses against PyTorch's f32 run (tests/fixtures/expected/sft.json);
#   4. `ladder bench` full/lora/dpo at the qwen2.5-0.5b shape against
#      `../shared/bench/torch_anchor.py --shape qwen2.5-0.5b --device cuda --dtype bf16`, same
#      batch and length (BATCH × SEQ, default 16 × 512).
# It prints one table (tokens/s, ratio to PyTorch, MFU = 6·N·tokens/s over 989 TFLOP/s dense
# bf16, and peak GPU memory as nvidia-smi samples it every 100 ms for both) and writes it, with
# every log, under $OUT (default runs/gpu-check).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
packed=target/gpu/ladder.xz

if [ "$mode" = pack ]; then
    set -e
    CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda} cargo build --release --features cuda --bin ladder
    mkdir -p target/gpu
    strip -o target/gpu/ladder "${CARGO_TARGET_DIR:-target/cuda}/release/ladder"
    xz -6 -T2 -f target/gpu/ladder
    ls -l "$packed"
    exit 0
fi
[ "$mode" = run ] || { echo "usage: scripts/gpu-check.sh pack|run" >&2; exit 2; }

OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
BATCH=${BATCH:-16}
SEQ=${SEQ:-512}
bin=${LADDER:-}
if [ -z "$bin" ]; then
    bin=$(mktemp -d)/ladder
    xz -dc "$packed" > "$bin" && chmod +x "$bin" || { echo "no $packed: run \`scripts/gpu-check.sh pack\` here first" >&2; exit 1; }
fi
# NVRTC and the CUDA headers: the toolkit's, else pip's nvidia-cuda-nvrtc.
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
nvrtc=$(python3 -c 'import nvidia.cuda_nvrtc as m, os; print(os.path.join(list(m.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$CUDA_PATH/lib64${nvrtc:+:$nvrtc}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
F=tests/fixtures
log() { echo "== $*" | tee -a "$OUT/steps.log"; }
# Runs a command under a limit, its output to $OUT/NAME.log; prints PASS/FAIL.
step() {
    local name=$1 limit=$2; shift 2
    if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then log "$name: ok"; else log "$name: FAILED (exit $?, $OUT/$name.log)"; tail -5 "$OUT/$name.log"; fi
}

log "1. nvidia-smi"
nvidia-smi | tee "$OUT/nvidia-smi.txt"

log "2. log-prob parity against transformers (f32)"
for case in "qwen2-tiny::" "llama-tiny::" "qwen2-tiny:qwen2-tiny-lora-peft:qwen2-tiny+lora-peft"; do
    IFS=: read -r model adapter key <<< "$case"
    key=${key:-$model}
    step "logprobs-$key" 120 "$bin" logprobs --model "$F/$model" ${adapter:+--adapter "$F/$adapter"} \
        --data "$F/data/sft.jsonl" --out "$OUT/logprobs-$key.jsonl" --device cuda --precision f32
    python3 - "$OUT/logprobs-$key.jsonl" "$key" <<'PY' | tee -a "$OUT/steps.log"
import json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = json.load(open("tests/fixtures/expected/logprobs.json"))[sys.argv[2]]["sft"]
worst = max(abs(g["logp"] - w["logp"]) for g, w in zip(got, want))
print(f"   {sys.argv[2]}: max |logp - transformers| = {worst:.2e} over {len(got)} rows ({'ok' if worst < 1e-3 and len(got) == len(want) else 'FAIL'})")
PY
done

log "3. five training steps each on the fixtures (bf16, the CUDA default)"
common=(--model "$F/qwen2-tiny" --lr 1e-3 --lr-scheduler constant --batch-size 2 --max-steps 5 --no-shuffle --weight-decay 0.01 --max-grad-norm 1.0 --device cuda)
step sft-full 120 "$bin" sft "${common[@]}" --data "$F/data/sft.jsonl" --out "$OUT/sft-full" --full
step sft-lora 120 "$bin" sft "${common[@]}" --data "$F/data/sft.jsonl" --out "$OUT/sft-lora" --adapter "$F/qwen2-tiny-lora-init"
step dpo-lora 120 "$bin" dpo "${common[@]}" --data "$F/data/dpo.jsonl" --out "$OUT/dpo-lora" --reference frozen --adapter "$F/qwen2-tiny-lora-init"
python3 - "$OUT" <<'PY' | tee -a "$OUT/steps.log"
import json, os, sys
want = json.load(open("tests/fixtures/expected/sft.json"))
for run, key in [("sft-full", "qwen2-tiny/full"), ("sft-lora", "qwen2-tiny/lora"), ("dpo-lora", None)]:
    path = os.path.join(sys.argv[1], run, "metrics.jsonl")
    if not os.path.exists(path):
        print(f"   {run}: no metrics"); continue
    losses = [json.loads(l)["loss"] for l in open(path)]
    line = f"   {run}: losses {[round(x, 4) for x in losses]}"
    if key:
        diff = max(abs(a - b) for a, b in zip(losses, want[key]["losses"]))
        line += f"; max |loss - PyTorch f32| over 3 steps {diff:.4f} ({'ok' if diff < 0.02 else 'FAIL'})"
    print(line)
PY

log "4. qwen2.5-0.5b, batch $BATCH x $SEQ: ladder bench vs PyTorch + PEFT (bf16, SDPA)"
# Peak device memory as nvidia-smi sees it, sampled every 100 ms while the command runs.
peak() {
    local name=$1; shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/$name.mem" 2>/dev/null &
    local sampler=$!
    timeout 150 "$@" > "$OUT/$name.log" 2>&1; local rc=$?
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    [ $rc = 0 ] || log "$name: FAILED (exit $rc, $OUT/$name.log)"
}
anchor=$(ls ../shared/bench/torch_anchor.py shared/bench/torch_anchor.py 2>/dev/null | head -1)
[ -n "$anchor" ] || log "torch_anchor.py not found beside the repository (../shared/bench or shared/bench)"
for mode in full lora dpo; do
    peak "ladder-$mode" "$bin" bench --mode "$mode" --shape qwen2.5-0.5b --device cuda --batch-size "$BATCH" --seq-len "$SEQ" --steps 5
    peak "torch-$mode" python3 "$anchor" "$mode" 16 --shape qwen2.5-0.5b --device cuda --dtype bf16 --batch "$BATCH" --seq "$SEQ"
done
python3 - "$OUT" <<'PY' | tee "$OUT/table.md"
import json, os, re, sys
out = sys.argv[1]
def mem(name):
    try:
        return max(int(v) for v in open(os.path.join(out, name + ".mem")).read().split() if v.strip().isdigit())
    except (OSError, ValueError):
        return float("nan")
def ladder(mode):
    for line in open(os.path.join(out, f"ladder-{mode}.log")):
        if line.startswith("{"):
            r = json.loads(line); return r["tokens_per_s"], r["params"]
    return float("nan"), 0
def torch(mode):
    m = re.search(r"tokens/s=(\d+)", open(os.path.join(out, f"torch-{mode}.log")).read())
    return float(m.group(1)) if m else float("nan")
print("| mode | ladder tok/s | PyTorch tok/s | ratio | ladder MFU | PyTorch MFU | peak GPU MiB ladder / PyTorch |")
print("|---|---|---|---|---|---|---|")
for mode in ["full", "lora", "dpo"]:
    try:
        (l, n), t = ladder(mode), torch(mode)
    except OSError:
        print(f"| {mode} | (no result) | | | | | |"); continue
    mfu = lambda tps: 6 * n * tps / 989e12
    print(f"| {mode} | {l:.0f} | {t:.0f} | {l / t:.2f} | {mfu(l):.1%} | {mfu(t):.1%} | {mem('ladder-' + mode)} / {mem('torch-' + mode)} |")
PY
echo "results: $OUT (table.md, steps.log, one log per step)"
