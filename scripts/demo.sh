#!/usr/bin/env bash
# The main jobs in miniature on all-MiniLM-L6-v2 (run scripts/setup.sh first; about two minutes
# on 2 cores): fine-tune on a few hundred IMDB reviews, evaluate on held-out ones, predict, draw
# the attention before and after, then a few masked-language-model steps on contract text and a
# fill-mask. Everything goes to target/demo/. Data: ../shared/data (DATA=... to point elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
bk=target/release/bertkit
model=.models/all-MiniLM-L6-v2
data=${DATA:-../shared/data}
out=target/demo
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

step "bertkit inspect $model"
$bk inspect "$model"

if [ ! -f "$data/imdb/imdb_2500.csv" ]; then
    echo "no $data/imdb/imdb_2500.csv: the fine-tuning and pretraining part of the demo needs the data (DATA=DIR)"
    exit 0
fi

step "data: 320 IMDB reviews to train on, 200 held out ($out/train.csv, $out/held_out.csv)"
python3 - "$data/imdb/imdb_2500.csv" "$out" <<'EOF'
import csv, random, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
random.Random(0).shuffle(rows)
for name, part in [("train", rows[:320]), ("held_out", rows[320:520])]:
    with open(f"{sys.argv[2]}/{name}.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["review", "sentiment"])
        w.writeheader()
        w.writerows(part)
EOF

step "bertkit finetune: a sentiment head on MiniLM (2 epochs, max-len 128)"
$bk finetune --model "$model" --train "$out/train.csv" --text-column review --label-column sentiment \
    --max-len 128 --batch-size 16 --lr 1e-4 --epochs 2 --precision fp32 --output "$out/imdb" --overwrite

step "bertkit evaluate on the 200 held-out reviews"
$bk evaluate --model "$out/imdb" --data "$out/held_out.csv" --text-column review --label-column sentiment \
    --max-len 128 --precision fp32 --json "$out/held_out_eval.json"

step "bertkit predict"
echo "I love this movie, it's fantastic!" | $bk predict --model "$out/imdb"

step "bertkit attention: layer 5, head 1 before and after fine-tuning, and what changed most"
s="I love this movie, it's fantastic!"
$bk attention --model "$model" --text "$s" --layer 5 --head 1 --out "$out/before.png" -q
$bk attention --model "$out/imdb" --text "$s" --layer 5 --head 1 --out "$out/after.png" -q
$bk attention --model "$model" --compare "$out/imdb" --text "$s" --layer 5 --head 1 --out "$out/change.png"
$bk attention --model "$model" --compare "$out/imdb" --text "$s" --out "$out/view.html" -q

contracts=("$data"/cuad/CUAD_v1/full_contract_txt/*.txt)
step "bertkit pretrain: 40 masked-language-model steps on 4 CUAD contracts (MiniLM ships no MLM head: it starts fresh)"
$bk pretrain --model "$model" --corpus "${contracts[@]:0:4}" --max-len 128 --batch-size 16 --lr 5e-4 \
    --max-steps 40 --eval-split 0.1 --precision fp32 --output "$out/legal" --overwrite

step "bertkit fill-mask with the further-pretrained model"
$bk fill-mask --model "$out/legal" --text "This Agreement shall be governed by the [MASK] of the State of New York." -q

step "outputs"
cat <<EOF
  $out/imdb/                fine-tuned model (HF directory, loads in transformers), log.jsonl, curves.png, README.md
  $out/held_out_eval.json   accuracy, macro-F1, per-class scores, confusion matrix
  $out/before.png, after.png, change.png   attention of layer 5 head 1; change.png: side by side and the difference
  $out/view.html            interactive head view of both models (open in a browser)
  $out/legal/               further-pretrained model with its MLM head, log.jsonl (perplexity), README.md
EOF
