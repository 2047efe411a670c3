#!/usr/bin/env bash
# Does further pretraining on contracts help legal retrieval? `bertkit adapt --task embedding`
# on the CUAD retrieval set (scripts/cuad_retrieval.py): DAPT on the 400 train contracts' texts,
# then MNRL fine-tunes of the original and the adapted model with the same seeds on a seeded
# sample of the training rows (question, passage, same-contract hard negative), each scored by
# NDCG@10 searching the 6 500 passages of the 109 test contracts; the report's paired t-test says
# whether the difference is more than the seeds' noise.
#   ROWS=1000 STEPS=500 bash bench/cuad_adapt_retrieval.sh [MODEL] [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}
seeds=${2:-3}
out=bench/out/cuad-adapt-retrieval
mkdir -p "$out"
rows=${ROWS:-1000}
python3 scripts/cuad_retrieval.py ../shared/data/cuad "$out/data" "$rows" >/dev/null
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
target/release/bertkit adapt --model "$model" --corpus "$out/data/dapt.txt" --train "$out/data/train-$rows.csv" \
    --task embedding --text-column question --text-pair-column passage --negative-columns negative \
    --test-queries "$out/data/test/queries.jsonl" --test-corpus "$out/data/test/corpus.jsonl" \
    --test-qrels "$out/data/test/qrels.tsv" --seeds "$seeds" --pretrain-steps "${STEPS:-500}" \
    --finetune-epochs 1 --finetune-max-len 128 --batch-size 16 --precision fp32 --threads 2 \
    --output "$out/study" --overwrite 2>"$out/adapt.log"
sed -n '/## Downstream/,$p' "$out/study/report.md" | head -n 12
