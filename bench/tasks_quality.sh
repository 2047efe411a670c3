#!/usr/bin/env bash
# The quality bars of the tasks beyond single-label classification: all-MiniLM-L6-v2 fine-tuned
# by bertkit and by transformers' Trainer on the same files (bench/tasks_data.py), same
# hyper-parameters (max-len 128, batch 16, lr 5e-5, 2 epochs, seed 42), scored on the test split:
# STS-B regression (dev), GoEmotions multi-label (the first GOEMOTIONS_TRAIN train rows, default
# 8 000; 43410 is all of them), CoNLL-2003 NER
# (first 4 000 train sentences, whole test file). One JSON line per tool and task.
# Usage: [LR=5e-5 EPOCHS=2 SEED=42 SAMPLING=random|group_by_length GOEMOTIONS_TRAIN=8000]
#        bash bench/tasks_quality.sh [OUT_DIR] [TASK...]
# (SAMPLING is given to both tools as --train-sampling-strategy)
# (needs scripts/setup.sh and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/tasks}
shift || true
tasks=${*:-regression multi-label token-classification}
model=.models/all-MiniLM-L6-v2
bk=target/release/bertkit
cargo build --release --quiet
python3 bench/tasks_data.py "$out/data" --goemotions-train "${GOEMOTIONS_TRAIN:-8000}"
hp=(--max-len 128 --batch-size 16 --lr "${LR:-5e-5}" --epochs "${EPOCHS:-2}" --seed "${SEED:-42}")
grep -o -m1 'avx512_bf16\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' > "$out/cpu_flags.txt"

for task in $tasks; do
    case $task in
        regression) train=stsb/train.csv test=stsb/dev.csv
            flags=(--text-column sentence1 --text-pair-column sentence2 --label-column score) ;;
        multi-label) train=goemotions/train.jsonl test=goemotions/test.jsonl flags=(--label-column labels) ;;
        token-classification) train=conll/train.conll test=conll/test.conll flags=() ;;
    esac
    start=$(date +%s.%N)
    $bk finetune --model $model --task "$task" --train "$out/data/$train" "${flags[@]}" "${hp[@]}" \
        --precision fp32 --output "$out/bertkit-$task" --overwrite --device cpu --log-every 50 -q --train-sampling-strategy "${SAMPLING:-random}"
    train_s=$(python3 -c "import time; print(time.time() - $start)")
    $bk evaluate --model "$out/bertkit-$task" --data "$out/data/$test" "${flags[@]}" --max-len 128 \
        --precision fp32 --device cpu --json "$out/bertkit-$task-eval.json" -q >/dev/null
    python3 -c "import json; m = json.load(open('$out/bertkit-$task-eval.json'))['metrics']; print(json.dumps({'tool': 'bertkit', 'task': '$task', 'train_seconds': $train_s, **m}))" \
        | tee "$out/bertkit-$task.json"
    python3 bench/tasks_trainer.py --task "$task" --model $model --train "$out/data/$train" --test "$out/data/$test" \
        "${hp[@]}" --train-sampling-strategy "${SAMPLING:-random}" --output "$out/trainer-$task" 2>"$out/trainer-$task.log" | tail -1 | tee "$out/trainer-$task.json"
done
