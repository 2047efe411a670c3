#!/usr/bin/env bash
# The fine-tuning quality bar: all-MiniLM-L6-v2 on 1 500 IMDB reviews, evaluated on 1 000 held
# out (fixed-seed split), max-len 256, batch 16, lr 5e-5, 2 epochs, seed 42 -- bertkit and
# transformers' Trainer on the same files, then the bertkit model loaded in transformers.
# Usage: bash bench/imdb_quality.sh [OUT_DIR]   (needs scripts/setup.sh and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/imdb}
model=.models/all-MiniLM-L6-v2
bk=target/release/bertkit
cargo build --release --quiet
python3 bench/imdb_split.py ../shared/data/imdb/imdb_2500.csv "$out/data"
# fp32 in every bertkit command, as the Trainer reference runs (bertkit's default is auto).
common=(--text-column review --label-column sentiment --max-len 256 --precision fp32)
hp=(--batch-size 16 --lr 5e-5 --epochs 2 --seed 42)
# SAMPLING=random gives Trainer's batches; the README's row was measured with group_by_length
# (bertkit's default then), which pads less.
sampling=(--train-sampling-strategy "${SAMPLING:-group_by_length}")

start=$(date +%s.%N)
$bk finetune --model $model --train "$out/data/train.csv" "${common[@]}" "${hp[@]}" "${sampling[@]}" \
    --output "$out/bertkit" --overwrite --device cpu --log-every 20
train_s=$(python3 -c "import time; print(time.time() - $start)")
start=$(date +%s.%N)
$bk evaluate --model "$out/bertkit" --data "$out/data/test.csv" "${common[@]}" --device cpu --json "$out/bertkit_eval.json" >/dev/null
eval_s=$(python3 -c "import time; print(time.time() - $start)")
python3 -c "import json; m = json.load(open('$out/bertkit_eval.json'))['metrics']; print(json.dumps({'tool': 'bertkit', 'accuracy': m['accuracy'], 'train_seconds': $train_s, 'eval_seconds': $eval_s}))" | tee "$out/bertkit_result.json"

python3 bench/finetune_trainer.py --model $model --train "$out/data/train.csv" --test "$out/data/test.csv" \
    "${common[@]}" "${hp[@]}" --output "$out/trainer" 2>"$out/trainer.log" | tail -1 | tee "$out/trainer_result.json"

$bk predict --model "$out/bertkit" --input "$out/data/test.csv" --text-column review --max-len 256 --precision fp32 \
    --output "$out/bertkit_predictions.jsonl" --device cpu
python3 bench/compare_predictions.py "$out/bertkit" "$out/data/test.csv" "$out/bertkit_predictions.jsonl" \
    --text-column review | tee "$out/python_agreement.json"
