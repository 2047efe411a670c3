#!/usr/bin/env bash
# The CUAD retrieval bar: MNRL fine-tunes of all-MiniLM-L6-v2 on a seeded sample of the CUAD
# retrieval set's training rows (question, passage, same-contract hard negative), bertkit against
# sentence-transformers' trainer (bench/cuad_mnrl_st.py) with the same rows, seeds and
# hyper-parameters, interleaved; each model's NDCG@10 (and the rest) searching the 6 500 passages
# of the 109 test contracts, bertkit's by `evaluate --queries`, sentence-transformers' by its
# InformationRetrievalEvaluator (bench/ir_st.py); and the base model's. Needs `pip install datasets`.
#   ROWS=1000 bash bench/cuad_mnrl.sh [MODEL] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}; shift || true
seeds=("${@:-1 2 3}"); seeds=(${seeds[@]})
out=bench/out/cuad-mnrl
mkdir -p "$out"
rows=${ROWS:-1000}
python3 scripts/cuad_retrieval.py ../shared/data/cuad "$out/data" "$rows" >/dev/null
train="$out/data/train-$rows.csv"
lr=5e-5 epochs=1 batch=16 max_len=128
test="$out/data/test"
benchmark=(--queries "$test/queries.jsonl" --corpus "$test/corpus.jsonl" --qrels "$test/qrels.tsv")
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for seed in "${seeds[@]}"; do
    start=$(date +%s.%N)
    target/release/bertkit finetune --model "$model" --train "$train" --task embedding --loss mnrl \
        --text-column question --text-pair-column passage --negative-columns negative --lr $lr \
        --epochs $epochs --batch-size $batch --max-len $max_len --seed "$seed" --precision fp32 --threads 2 \
        --output "$out/bertkit-$seed" --overwrite >/dev/null 2>"$out/bertkit-$seed.log"
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    target/release/bertkit evaluate --model "$out/bertkit-$seed" "${benchmark[@]}" --threads 2 --precision fp32 \
        --json "$out/bertkit-$seed.json" >/dev/null 2>>"$out/bertkit-$seed.log"
    python3 - "$out/bertkit-$seed.json" "$seed" "$seconds" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(json.dumps({"tool": "bertkit", "seed": int(sys.argv[2]), "seconds": round(float(sys.argv[3]), 1),
                  **{k: m[k] for k in ("ndcg_at_10", "mrr_at_10", "map_at_100", "recall_at_100")}}))
PY
    python3 bench/cuad_mnrl_st.py "$model" "$train" "$seed" $lr $epochs $batch $max_len \
        "$out/st-$seed" 2>"$out/st-$seed.log" | tail -n 1
    python3 bench/ir_st.py "$out/st-$seed" "$test" 2>>"$out/st-$seed.log" | tail -n 1
done
