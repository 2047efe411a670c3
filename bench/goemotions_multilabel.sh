#!/usr/bin/env bash
# Multi-label fine-tuning on little data (issue #38): 3 000 GoEmotions rows (28 labels),
# all-MiniLM-L6-v2, max-len 64, batch 32, lr 1e-4, 2 epochs, evaluation on 1 000 dev rows,
# micro/macro-F1 on 1 000 test rows, for each seed. Extra arguments go to finetune.
#   bash bench/goemotions_multilabel.sh "1 2 3" [finetune flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-"1 2 3"}
shift || true
out=bench/out/goemotions
mkdir -p "$out/data"
[ -f "$out/data/test.jsonl" ] || python3 bench/goemotions_data.py "${DATA:-../shared/data}/goemotions" "$out/data"
for seed in $seeds; do
    run=$out/seed$seed
    target/release/bertkit finetune --model .models/all-MiniLM-L6-v2 --train "$out/data/train.jsonl" \
        --eval "$out/data/dev.jsonl" --label-column labels --max-len 64 --batch-size 32 --lr 1e-4 --epochs 2 --seed "$seed" \
        --precision fp32 --output "$run" --overwrite -q "$@"
    target/release/bertkit evaluate --model "$run" --data "$out/data/test.jsonl" --label-column labels --max-len 64 -q \
        --json "$run/test_eval.json" >/dev/null
    python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['metrics']; print('seed', sys.argv[2], 'test micro-F1 %.3f macro-F1 %.3f' % (m['micro_f1'], m['macro_f1']))" "$run/test_eval.json" "$seed"
done
