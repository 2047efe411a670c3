#!/usr/bin/env bash
# CUAD reranker bar: bertkit (finetune --task rerank, BCE) against sentence-transformers'
# CrossEncoderTrainer (bench/cuad_rerank_st.py), same base model, data, seeds and
# hyper-parameters, interleaved; NDCG@10, MRR@10 and MAP of each question's candidate list per
# seed, and the base model's as a bi-encoder on the same lists (what training bought). Builds
# the set with scripts/cuad_retrieval.py and bench/cuad_rerank_data.py; the reference side
# needs `datasets` (setup.sh installs it).
#   bash bench/cuad_rerank.sh [MODEL] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}; shift || true
seeds=("${@:-1 2 3}"); seeds=(${seeds[@]})
out=bench/out/cuad-rerank
[ -f bench/out/cuad-retrieval/train.csv ] ||
    python3 scripts/cuad_retrieval.py ../shared/data/cuad bench/out/cuad-retrieval >/dev/null
python3 bench/cuad_rerank_data.py bench/out/cuad-retrieval "$out" 800
lr=5e-5 epochs=1 batch=16 warmup=0.1 max_len=256
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
python3 bench/cuad_rerank_st.py "$model" base "$out/test.csv" 2>/dev/null | tail -n 1
columns=(--text-column query --text-pair-column passage --label-column label)
for seed in "${seeds[@]}"; do
    start=$(date +%s.%N)
    target/release/bertkit finetune --model "$model" --train "$out/train.csv" --task rerank "${columns[@]}" \
        --lr $lr --epochs $epochs --batch-size $batch --warmup-ratio $warmup --max-len $max_len --seed "$seed" \
        --precision fp32 --threads 2 --output "$out/bertkit-$seed" --overwrite >/dev/null 2>&1
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    target/release/bertkit evaluate --model "$out/bertkit-$seed" --data "$out/test.csv" "${columns[@]}" \
        --max-len $max_len --batch-size 64 --threads 2 --json "$out/bertkit-$seed.json" >/dev/null 2>&1
    python3 - "$out/bertkit-$seed.json" "$seed" "$seconds" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(json.dumps({"tool": "bertkit", "seed": int(sys.argv[2]), "seconds": round(float(sys.argv[3]), 1),
                  **{k: m[k] for k in ("ndcg_at_10", "mrr_at_10", "map")}}))
PY
    python3 bench/cuad_rerank_st.py "$model" "$out/train.csv" "$out/test.csv" "$seed" $lr $epochs $batch $warmup \
        $max_len "$out/st-$seed" 2>/dev/null | tail -n 1
done
