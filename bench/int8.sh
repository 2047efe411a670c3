#!/usr/bin/env bash
# Int8 inference against float32 and the references, interleaved on this machine: a fine-tuned
# classifier (float) and what `bertkit quantize` made of it (int8), run by `bertkit bench
# --workload inference`; the same float directory through ONNX Runtime (fp32, and int8 by
# onnxruntime.quantization.quantize_dynamic at its defaults) and PyTorch (torch.ao's
# quantize_dynamic, per-channel), bench/reference_step.py. Full batches (SEQ) and, with MIN,
# random lengths MIN..SEQ. One JSON line per run, then the medians per tool.
# Usage: [ROUNDS=3 BATCH=32 SEQ=128 MIN=] bash bench/int8.sh FLOAT_DIR INT8_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
float=${1:?a fine-tuned float model}
int8=${2:?its int8 directory (bertkit quantize --out)}
batch=${BATCH:-32} seq=${SEQ:-128}
min=(); [ -n "${MIN:-}" ] && min=(--min-len "$MIN")
cargo build --release --quiet
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')" >&2
bk() { target/release/bertkit -q bench --model "$1" --device cpu --precision fp32 --workload inference \
    --batch-size "$batch" --seq-len "$seq" "${min[@]}" --steps 8 2>/dev/null | python3 -c "
import json, sys; r = json.loads(sys.stdin.read()); r['tool'] = '$2'; print(json.dumps(r))"; }
ref() { python3 bench/reference_step.py --model "$float" --workload inference --device cpu --batch-size "$batch" \
    --seq-len "$seq" "${min[@]}" --steps 8 "$@" 2>/dev/null | python3 -c "
import json, sys; r = json.loads(sys.stdin.read().strip().splitlines()[-1]); r['tool'] += '-' + r['precision']; print(json.dumps(r))"; }
for r in $(seq "${ROUNDS:-3}"); do
    bk "$float" bertkit-fp32
    bk "$int8" bertkit-int8
    ref --engine onnxruntime --precision fp32
    ref --engine onnxruntime --precision int8
    ref --engine torch --precision int8
done | tee /dev/stderr | python3 -c "
import collections, json, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    r = json.loads(line)
    runs[r['tool']].append(r['tokens_per_s'])
base = sorted(runs['bertkit-int8'])[len(runs['bertkit-int8']) // 2]
for tool, v in runs.items():
    m = sorted(v)[len(v) // 2]
    print(f'{tool:20s} tokens/s median {m:9.0f}  ({\", \".join(f\"{x:.0f}\" for x in v)})  bertkit-int8 / this: {base / m:.2f}x')
"
