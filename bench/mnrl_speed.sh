#!/usr/bin/env bash
# MNRL training step, bertkit against sentence-transformers' trainer (bench/mnrl_speed_st.py),
# interleaved rounds on the same machine: all-MiniLM-L6-v2, pairs of texts longer than the
# max length (no padding on either side), fp32, 2 threads. Prints tokens/s and peak RSS per round
# and the ratio. Needs `pip install datasets` for the reference side. MINI=N: the cached losses
# (bertkit --mini-batch-size N, CachedMultipleNegativesRankingLoss(mini_batch_size=N)).
#   [MINI=32] bash bench/mnrl_speed.sh [MODEL] [MAX_LEN] [BATCH] [STEPS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2} max_len=${2:-128} batch=${3:-64} steps=${4:-12} rounds=${5:-3}
out=bench/out/mnrl-speed
mkdir -p "$out"
python3 - "$out/pairs.csv" "$batch" "$steps" <<'PY'
import csv, random, sys
rng = random.Random(0)
words = ("the lessee shall pay rent monthly to the landlord who maintains roof walls and any common areas "
         "under this agreement governed by the laws of delaware notice termination assignment").split()
rows = [(" ".join(rng.choice(words) for _ in range(200)), " ".join(rng.choice(words) for _ in range(200)))
        for _ in range(int(sys.argv[2]) * (int(sys.argv[3]) + 2))]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f); w.writerow(["anchor", "positive"]); w.writerows(rows)
PY
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for round in $(seq "$rounds"); do
    rm -rf "$out/bertkit"
    /usr/bin/time -f "%M" -o "$out/rss" target/release/bertkit finetune --model "$model" --train "$out/pairs.csv" \
        --task embedding --text-column anchor --text-pair-column positive --max-len "$max_len" \
        --batch-size "$batch" --max-steps "$steps" --log-every 1 --precision fp32 --threads 2 \
        ${MINI:+--mini-batch-size "$MINI"} --output "$out/bertkit" >/dev/null 2>&1
    python3 - "$out/bertkit/log.jsonl" "$out/rss" "$round" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if '"event":"train"' in l][2:]
tps = sum(s["tokens_per_s"] for s in steps) / len(steps)
print(json.dumps({"tool": "bertkit", "round": int(sys.argv[3]), "tokens_per_s": round(tps),
                  "peak_rss_mb": int(open(sys.argv[2]).read().split()[-1]) // 1024}))
PY
    python3 bench/mnrl_speed_st.py "$model" "$out/pairs.csv" "$max_len" "$batch" "$steps" "$out/st" ${MINI:-} 2>/dev/null |
        tail -n 1
done
