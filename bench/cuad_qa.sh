#!/usr/bin/env bash
# CUAD as extractive QA: bertkit (finetune --task question-answering) against transformers'
# Trainer with run_qa's windows and post-processing (bench/cuad_qa_trainer.py), same base model,
# contracts, seeds and hyper-parameters, one after the other per seed; CUAD's AUPR and precision
# at 80% / 90% recall on the test contracts. Training windows without an answer are thinned as
# CUAD trains (--null-windows balanced). Sized for a CPU: TRAIN_CONTRACTS and TEST_CONTRACTS
# contracts of at most MAX_WORDS words drawn with a fixed seed (scripts/cuad_qa.py).
#   TRAIN_CONTRACTS=40 TEST_CONTRACTS=3 MAX_WORDS=4000 EPOCHS=2 bash bench/cuad_qa.sh [MODEL] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}; shift || true
seeds=("${@:-1 2 3}"); seeds=(${seeds[@]})
n_train=${TRAIN_CONTRACTS:-40} n_test=${TEST_CONTRACTS:-3} max_words=${MAX_WORDS:-4000}
data=bench/out/cuad-qa out=bench/out/cuad-qa/runs
mkdir -p "$out"
python3 scripts/cuad_qa.py ../shared/data/cuad "$data" --train-contracts "$n_train" --test-contracts "$n_test" \
    --max-words "$max_words" >/dev/null
train=$data/train-$n_train-under-$max_words.json test=$data/test-$n_test-under-$max_words.json
lr=1e-4 epochs=${EPOCHS:-2} batch=16 max_len=384 stride=128
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "train $train, test $test: lr $lr, epochs $epochs, batch $batch, max-len $max_len, stride $stride, fp32"
for seed in "${seeds[@]}"; do
    start=$(date +%s.%N)
    target/release/bertkit finetune --model "$model" --train "$train" --task question-answering \
        --null-windows balanced --lr $lr --epochs $epochs --batch-size $batch --warmup-ratio 0.1 \
        --max-len $max_len --doc-stride $stride --seed "$seed" --precision fp32 --threads 2 \
        --output "$out/bertkit-$seed" --overwrite >"$out/bertkit-$seed.log" 2>&1
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    target/release/bertkit evaluate --model "$out/bertkit-$seed" --data "$test" --cuad-metrics \
        --max-len $max_len --doc-stride $stride --batch-size 64 --threads 2 --json "$out/bertkit-$seed.json" \
        >>"$out/bertkit-$seed.log" 2>&1
    python3 - "$out/bertkit-$seed.json" "$seed" "$seconds" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(json.dumps({"tool": "bertkit", "seed": int(sys.argv[2]), "train_seconds": round(float(sys.argv[3]), 1),
                  **{k: round(m[k], 4) for k in ("aupr", "precision_at_80_recall", "precision_at_90_recall")}}))
PY
    python3 bench/cuad_qa_trainer.py "$model" "$train" "$test" "$seed" $lr $epochs $batch $max_len $stride \
        "$out/trainer-$seed" 2>"$out/trainer-$seed.log" | tail -n 1
done
