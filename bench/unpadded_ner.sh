#!/usr/bin/env bash
# CoNLL-2003 NER speed with random batches, padded and unpadded, beside length-grouped batches:
# the tasks_quality.sh settings (all-MiniLM-L6-v2, first 4 000 train sentences, max-len 128,
# batch 16, lr 5e-5, 2 epochs, seed 42, fp32), each configuration's whole `finetune` timed
# (loading, tokenising and its held-out evaluations included) and the model scored on the whole
# test file; configurations interleaved, ROUNDS rounds. One JSON line per run.
# Usage: bash bench/unpadded_ner.sh [ROUNDS] [OUT_DIR]   (needs scripts/setup.sh, ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
out=${2:-bench/out/unpadded-ner}
bk=target/release/bertkit
cargo build --release --quiet
python3 bench/tasks_data.py "$out/data" > /dev/null
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
for r in $(seq "$ROUNDS"); do
  for config in "random never" "random auto" "group_by_length never" "group_by_length auto"; do
    read -r sampling unpad <<<"$config"
    start=$(date +%s.%N)
    $bk -q finetune --model .models/all-MiniLM-L6-v2 --task token-classification --train "$out/data/conll/train.conll" \
      --max-len 128 --batch-size 16 --lr 5e-5 --epochs 2 --seed 42 --precision fp32 --device cpu \
      --train-sampling-strategy "$sampling" --unpad "$unpad" --output "$out/run" --overwrite > /dev/null
    seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")
    $bk -q evaluate --model "$out/run" --data "$out/data/conll/test.conll" --max-len 128 --precision fp32 \
      --device cpu --json "$out/eval.json" > /dev/null
    python3 -c "import json; m = json.load(open('$out/eval.json'))['metrics']; print(json.dumps({'sampling': '$sampling', 'unpad': '$unpad', 'train_seconds': $seconds, 'f1': m.get('f1')}))"
  done
done
