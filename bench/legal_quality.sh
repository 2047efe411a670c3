#!/usr/bin/env bash
# The further-pretraining quality bar: all-MiniLM-L6-v2 on the CUAD contracts (5% of blocks held
# out), max-len 128, batch 16, lr 5e-5, seed 42; held-out masked-token loss and perplexity
# before/after and fill-mask top-5 before/after, then the same run in Python (run_mlm style).
# Usage: STEPS=2000 bash bench/legal_quality.sh [OUT_DIR]   (needs scripts/setup.sh and ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out/legal}
steps=${STEPS:-2000}
model=.models/all-MiniLM-L6-v2
corpus=../shared/data/cuad/CUAD_v1/full_contract_txt
bk=target/release/bertkit
cargo build --release --quiet
mkdir -p "$out"
sentences=(
    "The lessee shall [MASK] the premises in good repair."
    "This Agreement shall be governed by the laws of the State of [MASK]."
    "Either party may [MASK] this Agreement upon thirty days written notice."
    "The [MASK] shall indemnify the Company against all claims."
)
fill() { local args=(); for s in "${sentences[@]}"; do args+=(--text "$s"); done; $bk fill-mask --model "$1" "${args[@]}" --device cpu; }

start=$(date +%s.%N)
$bk pretrain --model $model --corpus $corpus --output "$out/bertkit" --overwrite --max-len 128 --batch-size 16 \
    --lr 5e-5 --max-steps "$steps" --eval-split 0.05 --seed 42 --device cpu --precision fp32 --log-every 20 \
    --train-sampling-strategy group_by_length  # the README's row was measured with it (the default then)
secs=$(python3 -c "import time; print(time.time() - $start)")
python3 - "$out" "$secs" <<'PY' | tee "$out/bertkit_result.json"
import json, sys
out, secs = sys.argv[1], float(sys.argv[2])
before = json.load(open(f"{out}/bertkit/eval_before.json"))["metrics"]
after = json.load(open(f"{out}/bertkit/eval_results.json"))["metrics"]
log = [json.loads(l) for l in open(f"{out}/bertkit/log.jsonl")]
tps = [r["tokens_per_s"] for r in log if r.get("event") == "train" and r.get("tokens_per_s")]
print(json.dumps({"tool": "bertkit", "eval_loss_before": before["eval_loss"], "eval_loss_after": after["eval_loss"],
                  "perplexity_after": after["perplexity"], "wall_seconds": secs,
                  "train_tokens_per_s_median": sorted(tps)[len(tps) // 2] if tps else None}))
PY
echo "== fill-mask before (MiniLM has no MLM head: its head is freshly initialised)" | tee "$out/fill_mask.txt"
fill $model | tee -a "$out/fill_mask.txt"
echo "== fill-mask after $steps steps on CUAD" | tee -a "$out/fill_mask.txt"
fill "$out/bertkit" | tee -a "$out/fill_mask.txt"

python3 bench/pretrain_run_mlm.py --model $model --corpus $corpus --output "$out/python" --max-len 128 \
    --batch-size 16 --lr 5e-5 --max-steps "$steps" --eval-split 0.05 --seed 42 2>"$out/python.log" | tail -1 | tee "$out/python_result.json"
