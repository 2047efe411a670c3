#!/usr/bin/env bash
# The main jobs in miniature on all-MiniLM-L6-v2 (run scripts/setup.sh first; about two minutes
# on 2 cores): fine-tune on a few hundred IMDB reviews, evaluate on held-out ones, predict, draw
# the attention before and after, then a few masked-language-model steps on contract text and a
# fill-mask. Everything goes to target/demo/, each command's log to target/demo/logs/.
#
# Data: the sample shipped in data/demo/ (400 reviews, 4 CUAD contracts; see its README), or the
# full data sets with DATA=DIR (DIR/imdb/imdb_2500.csv and DIR/cuad/CUAD_v1/full_contract_txt/).
set -euo pipefail
cd "$(dirname "$0")/.."
bk=target/release/bertkit
model=.models/all-MiniLM-L6-v2
out=target/demo
logs=$out/logs
mkdir -p "$logs"

# step NAME WHAT_IT_MADE COMMAND...: runs COMMAND with its output in logs/NAME.log and prints one
# line; on failure, the log's end and the exit status.
n=0
step() {
    local name=$1 made=$2
    shift 2
    n=$((n + 1))
    local log="$logs/$n-$name.log"
    local start=$SECONDS
    if "$@" >"$log" 2>&1; then
        printf '%2d. %-11s %s  (%ds, log %s)\n' "$n" "$name" "$made" $((SECONDS - start)) "$log"
    else
        local rc=$?
        printf '%2d. %-11s FAILED (exit %d); the end of %s:\n' "$n" "$name" "$rc" "$log"
        tail -n 20 "$log"
        exit "$rc"
    fi
}

if [ -n "${DATA:-}" ]; then
    # The full data: 320 reviews to train on and 200 held out, drawn as the sample was.
    split() {
        python3 - "$DATA/imdb/imdb_2500.csv" "$out" <<'EOF'
import csv, random, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
random.Random(0).shuffle(rows)
for name, part in [("train", rows[:320]), ("held_out", rows[320:520])]:
    with open(f"{sys.argv[2]}/{name}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["review", "sentiment"])
        w.writeheader()
        w.writerows(part)
EOF
    }
    step data "$out/train.csv, $out/held_out.csv (320 + 200 reviews of $DATA)" split
    train=$out/train.csv held_out=$out/held_out.csv
    contracts=("$DATA"/cuad/CUAD_v1/full_contract_txt/*.txt)
    contracts=("${contracts[@]:0:4}")
else
    train=data/demo/imdb/train.csv held_out=data/demo/imdb/held_out.csv
    contracts=(data/demo/cuad/*.txt)
fi

step inspect "the model's config, parameters and heads, printed to its log" $bk inspect "$model"

step finetune "$out/imdb/ (a sentiment classifier: HF directory, log.jsonl, curves.png, README.md)" \
    $bk finetune --model "$model" --train "$train" --text-column review --label-column sentiment \
    --max-len 128 --batch-size 16 --lr 1e-4 --epochs 2 --precision fp32 \
    --output "$out/imdb" --overwrite

step evaluate "$out/held_out_eval.json (accuracy, F1, confusion matrix on $held_out)" \
    $bk evaluate --model "$out/imdb" --data "$held_out" --text-column review --label-column sentiment \
    --max-len 128 --precision fp32 --json "$out/held_out_eval.json"

s="I love this movie, it's fantastic!"
predict() { echo "$s" | $bk predict --model "$out/imdb" --output "$out/prediction.jsonl"; }
step predict "$out/prediction.jsonl (\"$s\")" predict

step attention "$out/before.png, after.png (layer 5 head 1), change.png (their difference)" \
    bash -c "$bk attention --model '$model' --text \"\$0\" --layer 5 --head 1 --out '$out/before.png' &&
             $bk attention --model '$out/imdb' --text \"\$0\" --layer 5 --head 1 --out '$out/after.png' &&
             $bk attention --model '$model' --compare '$out/imdb' --text \"\$0\" --layer 5 --head 1 --out '$out/change.png'" "$s"
step view "$out/view.html (every head of both models; open it in a browser)" \
    $bk attention --model "$model" --compare "$out/imdb" --text "$s" --out "$out/view.html"

step pretrain "$out/legal/ (40 MLM steps on ${#contracts[@]} contracts; MiniLM's MLM head starts fresh)" \
    $bk pretrain --model "$model" --corpus "${contracts[@]}" --max-len 128 --batch-size 16 --lr 5e-4 \
    --max-steps 40 --eval-split 0.1 --precision fp32 --output "$out/legal" --overwrite

step fill-mask "the five likeliest words for [MASK], below" \
    $bk fill-mask --model "$out/legal" --text "This Agreement shall be governed by the [MASK] of the State of New York."

echo
echo "held-out accuracy: $(grep -o '"accuracy": *[0-9.]*' "$out/held_out_eval.json" | head -1 | grep -o '[0-9.]*$')"
echo "prediction: $(cat "$out/prediction.jsonl")"
echo "fill-mask:"
grep -v -E '^ *$|INFO|WARN' "$logs/$n-fill-mask.log" | sed 's/^/  /'
