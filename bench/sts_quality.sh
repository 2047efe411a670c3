#!/usr/bin/env bash
# STS-B embedding bar: bertkit (finetune --task embedding --loss cosent) against
# sentence-transformers' trainer (bench/sts_st.py), same base model, data, seeds and
# hyper-parameters, interleaved; test Spearman/Pearson of the cosine per seed and their mean,
# and the base model's scores (what training bought). Needs `pip install datasets` for the
# reference side.
#   bash bench/sts_quality.sh [MODEL] [SEEDS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}; shift || true
seeds=("${@:-1 2 3}"); seeds=(${seeds[@]})
out=bench/out/sts
python3 bench/sts_data.py ../shared/data/stsb "$out" >/dev/null
lr=2e-5 epochs=1 batch=16 warmup=0.1
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
base=$(target/release/bertkit evaluate --model "$model" --data "$out/test.csv" --text-column sentence1 \
    --text-pair-column sentence2 --score-column score 2>/dev/null)
echo "{\"tool\": \"base model\", \"test\": \"$base\"}"
for seed in "${seeds[@]}"; do
    start=$(date +%s.%N)
    target/release/bertkit finetune --model "$model" --train "$out/train.csv" --task embedding --loss cosent \
        --text-column sentence1 --text-pair-column sentence2 --label-column score --lr $lr --epochs $epochs \
        --batch-size $batch --warmup-ratio $warmup --seed "$seed" --precision fp32 --threads 2 \
        --output "$out/bertkit-$seed" --overwrite >/dev/null 2>&1
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    test=$(target/release/bertkit evaluate --model "$out/bertkit-$seed" --data "$out/test.csv" \
        --text-column sentence1 --text-pair-column sentence2 --score-column score 2>/dev/null)
    echo "{\"tool\": \"bertkit\", \"seed\": $seed, \"seconds\": $seconds, \"test\": \"$test\"}"
    python3 bench/sts_st.py "$model" "$out/train.csv" "$out/test.csv" "$seed" $lr $epochs $batch $warmup \
        "$out/st-$seed" 2>/dev/null | tail -n 1
done
