#!/usr/bin/env bash
# compare-models against the cost of evaluating each model: all-MiniLM-L6-v2 before and after
# the README's IMDB fine-tune (bench/imdb_quality.sh's model: 1 500 reviews, max-len 256, 2
# epochs), over the 1 000 held-out reviews. Prints the seconds of one `evaluate` (fp32, as
# compare-models runs), of compare-models without pages and with its 10 pages, and the ratio
# to two evaluate runs; then the seed sentence's attributions before and after.
# Usage: bash bench/compare_models.sh [OUT_DIR]   (needs scripts/setup.sh and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/compare}
base=.models/all-MiniLM-L6-v2
bk=target/release/bertkit
cargo build --release --quiet
python3 bench/imdb_split.py ../shared/data/imdb/imdb_2500.csv "$out/data"
cols=(--text-column review --label-column sentiment --max-len 256)
if [ ! -f "$out/imdb/model.safetensors" ]; then
    $bk finetune --model $base --train "$out/data/train.csv" "${cols[@]}" --precision fp32 \
        --batch-size 16 --lr 5e-5 --epochs 2 --seed 42 --train-sampling-strategy group_by_length \
        --output "$out/imdb" --overwrite --device cpu --log-every 50
fi
grep -o 'flags.*' /proc/cpuinfo | head -1 | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_bf16)$' | tr '\n' ' '; echo
seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null 2>&1; python3 -c "import time; print(round(time.time() - $s, 1))"; }
eval_s=$(seconds $bk evaluate --model "$out/imdb" --data "$out/data/test.csv" "${cols[@]}" --precision fp32 --device cpu)
bare_s=$(seconds $bk compare-models --model $base --model "$out/imdb" --data "$out/data/test.csv" "${cols[@]}" \
    --out "$out/report-bare" --explain-flipped 0 --device cpu)
full_s=$(seconds $bk compare-models --model $base --model "$out/imdb" --data "$out/data/test.csv" "${cols[@]}" \
    --out "$out/report" --device cpu)
python3 - "$eval_s" "$bare_s" "$full_s" "$out/report/report.json" <<'PY'
import json, sys
e, bare, full = map(float, sys.argv[1:4])
r = json.load(open(sys.argv[4]))
print(json.dumps({"evaluate_s": e, "compare_models_s": bare, "compare_models_with_pages_s": full,
                  "ratio_to_two_evaluates": round(bare / (2 * e), 3),
                  "metrics": r["metrics"], "changes": len(r["changes"]),
                  "cka_diagonal": [round(row[i], 3) for i, row in enumerate(r["cka"])]}))
PY
s="I love this movie, it's fantastic!"
$bk explain --model "$out/imdb" --compare $base --text "$s" --out "$out/explain.png" --json "$out/explain.json" --device cpu
