#!/usr/bin/env bash
# Training speed of each task's head against single-label classification at the same shapes:
# `bertkit bench --workload finetune --task T` on all-MiniLM-L6-v2, L=128 B=32, fp32, the four
# tasks interleaved for ROUNDS rounds; prints each task's median tokens/s and its ratio to
# classification's. Usage: bash bench/tasks_speed.sh [ROUNDS]   (needs scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
bk=target/release/bertkit
cargo build --release --quiet
echo "cpu flags: $(grep -o -m1 'avx512_bf16\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
out=$(mktemp)
for _ in $(seq "$rounds"); do
    for task in classification multi-label regression token-classification; do
        $bk bench --model .models/all-MiniLM-L6-v2 --workload finetune --task $task --batch-size 32 \
            --seq-len 128 --steps 10 --device cpu -q >> "$out"
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
speed = {}
for r in rows:
    speed.setdefault(r["task"], []).append(r["tokens_per_s"])
base = statistics.median(speed["classification"])
for task, v in speed.items():
    m = statistics.median(v)
    print(json.dumps({"task": task, "median_tokens_per_s": round(m), "runs": [round(x) for x in v],
                      "ratio_to_classification": round(m / base, 3)}))
PY
