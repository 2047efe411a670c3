#!/usr/bin/env bash
# The CUAD legal retrieval set (scripts/cuad_retrieval.py: 41 category questions against the
# 200-word passages of the test contracts), then a model's search measures by `bertkit evaluate`
# and by sentence-transformers' InformationRetrievalEvaluator (bench/ir_st.py) on the same files:
# the same numbers are expected up to float rounding of the vectors.
#   bash bench/cuad_retrieval.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}
out=bench/out/cuad-retrieval
python3 scripts/cuad_retrieval.py ../shared/data/cuad "$out" >/dev/null
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
start=$(date +%s.%N)
target/release/bertkit evaluate --model "$model" --queries "$out/test/queries.jsonl" --corpus "$out/test/corpus.jsonl" \
    --qrels "$out/test/qrels.tsv" --threads 2 --json "$out/bertkit.json" >/dev/null 2>"$out/bertkit.log" ||
    { tail -n 3 "$out/bertkit.log"; exit 1; }
python3 - "$out/bertkit.json" "$(echo "$(date +%s.%N) - $start" | bc)" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
print(json.dumps({"tool": "bertkit", "seconds": round(float(sys.argv[2]), 1), **m}))
PY
python3 bench/ir_st.py "$model" "$out/test" 2>/dev/null | tail -n 1
