#!/usr/bin/env bash
# End-to-end fine-tuning with and without unpadded execution, interleaved: all-MiniLM-L6-v2 on
# the first ROWS IMDB reviews, max-len 512, random batches of 8, 1 epoch, fp32 (workload 6 of
# bench/run.py at another size), `--unpad never` then `--unpad auto`, ROUNDS pairs. Prints each
# run's real tokens/s and padding share over its whole wall time (loading and tokenising
# included), then the ratio per pair. Usage: bash bench/unpadded_imdb.sh [ROWS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000}
ROUNDS=${2:-2}
cargo build --release --quiet
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
head -n $((ROWS + 1)) ../shared/data/imdb/imdb_2500.csv > "$OUT/imdb.csv"
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
for r in $(seq "$ROUNDS"); do
  for unpad in never auto; do
    start=$(date +%s.%N)
    target/release/bertkit -q finetune --model .models/all-MiniLM-L6-v2 --train "$OUT/imdb.csv" \
      --text-column review --label-column sentiment --max-len 512 --batch-size 8 --lr 5e-5 --epochs 1 \
      --seed 42 --output "$OUT/run" --overwrite --device cpu --precision fp32 --unpad "$unpad" > /dev/null
    end=$(date +%s.%N)
    python3 - "$OUT/run/log.jsonl" "$unpad" "$start" "$end" <<'PY'
import json, sys
log, unpad, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
rec = [json.loads(l) for l in open(log) if '"event":"end"' in l][-1]["this_process"]
seconds = end - start
print(json.dumps({"unpad": unpad, "seconds": round(seconds, 1), "tokens_per_s": round(rec["tokens"] / seconds, 1),
                  "padding": round(1 - rec["tokens"] / rec["padded_tokens"], 3)}), flush=True)
PY
  done
done | tee "$OUT/runs.jsonl"
python3 - "$OUT/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
never = [r for r in runs if r["unpad"] == "never"]
auto = [r for r in runs if r["unpad"] == "auto"]
pairs = [a["tokens_per_s"] / n["tokens_per_s"] for n, a in zip(never, auto)]
print(f"padded {statistics.median(r['tokens_per_s'] for r in never):.0f} real tok/s, "
      f"unpadded {statistics.median(r['tokens_per_s'] for r in auto):.0f}: "
      f"{statistics.median(pairs):.2f}x ({min(pairs):.2f}-{max(pairs):.2f}) over {len(pairs)} pairs")
PY
