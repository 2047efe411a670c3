#!/usr/bin/env bash
# Load test of `bertkit serve` as a reranker (TEI's /rerank) against the Python reference
# (bench/serve_rerank_reference.py: sentence-transformers' CrossEncoder behind FastAPI/uvicorn,
# batched the same way), same model, same machine, fp32, max-len 128; each request one query
# and PASSAGES passages (IMDB review text). Otherwise as bench/serve_load.sh: per concurrency
# level bertkit then the reference, then the throughput of each at equal p99 latency.
# Usage: [DURATION=20 LEVELS="1 2 4 8 16" PASSAGES=10 REFERENCE=DIR] bash bench/serve_rerank.sh MODEL_DIR [OUT_DIR]
# (MODEL_DIR: a reranker, e.g. bench/out/cuad-rerank/bertkit-1 from bench/cuad_rerank.sh; REFERENCE:
# what the reference serves, default MODEL_DIR: the float model when MODEL_DIR is its int8 copy;
# REFERENCE_INT8=1: the reference quantizes it with torch.ao's quantize_dynamic)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?a reranker directory}
out=${2:-bench/out/serve-rerank}
passages=${PASSAGES:-10}
mkdir -p "$out"
cargo build --release --quiet
python3 bench/serve_texts.py "$out/texts.txt" --words 60
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
target/release/bertkit serve --model "$model" --port 18080 --precision fp32 --max-len 128 --device cpu \
    --max-client-batch-size 64 -q > "$out/bertkit.log" &
bk=$!
python3 bench/serve_rerank_reference.py --model "${REFERENCE:-$model}" ${REFERENCE_INT8:+--int8} --port 18081 --max-len 128 > "$out/reference.log" 2>&1 &
ref=$!
trap 'kill $bk $ref 2>/dev/null || true' EXIT
for port in 18080 18081; do
    until curl -sf "localhost:$port/health" >/dev/null; do sleep 1; done
done
: > "$out/results.jsonl"
for c in ${LEVELS:-1 2 4 8 16}; do
    python3 bench/serve_load.py --url http://127.0.0.1:18080/rerank --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $bk --name bertkit --rerank "$passages" | tee -a "$out/results.jsonl"
    python3 bench/serve_load.py --url http://127.0.0.1:18081/rerank --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $ref --name "sentence-transformers+fastapi" --rerank "$passages" |
        tee -a "$out/results.jsonl"
done
python3 bench/serve_equal_p99.py "$out/results.jsonl" --reference sentence-transformers+fastapi | tee "$out/equal_p99.jsonl"
