#!/usr/bin/env bash
# Load test of `bertkit serve` as an embedding server on OpenAI's /v1/embeddings against the
# Python reference (bench/serve_embed_reference.py: sentence-transformers behind
# FastAPI/uvicorn, batched the same way), same model, same machine, fp32, max-len 128, the first 60
# words of an IMDB review per request. Otherwise as bench/serve_load.sh: per concurrency level bertkit then the
# reference, then the throughput of each at equal p99 latency.
# Usage: [DURATION=20 LEVELS="1 4 16"] bash bench/serve_embed.sh [MODEL_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-.models/all-MiniLM-L6-v2}
out=${2:-bench/out/serve-embed}
mkdir -p "$out"
cargo build --release --quiet
# 60 words: under 128 tokens, since OpenAI's request has no "truncate" (an over-long
# input is an error there, as on bertkit's route).
python3 bench/serve_texts.py "$out/texts.txt" --words 60
echo "cpu: $(lscpu | grep 'Model name' | sed 's/.*: *//') | $(grep -o -w 'avx2\|avx512f\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
target/release/bertkit serve --model "$model" --task embed --port 18080 --precision fp32 --max-len 128 \
    --device cpu -q > "$out/bertkit.log" &
bk=$!
python3 bench/serve_embed_reference.py --model "$model" --port 18081 --max-len 128 > "$out/reference.log" 2>&1 &
ref=$!
trap 'kill $bk $ref 2>/dev/null || true' EXIT
for port in 18080 18081; do
    until curl -sf "localhost:$port/health" >/dev/null; do sleep 1; done
done
: > "$out/results.jsonl"
for c in ${LEVELS:-1 4 16}; do
    python3 bench/serve_load.py --url http://127.0.0.1:18080/v1/embeddings --texts "$out/texts.txt" \
        --concurrency "$c" --seconds "${DURATION:-20}" --pid $bk --name bertkit --openai | tee -a "$out/results.jsonl"
    python3 bench/serve_load.py --url http://127.0.0.1:18081/v1/embeddings --texts "$out/texts.txt" \
        --concurrency "$c" --seconds "${DURATION:-20}" --pid $ref --name "sentence-transformers+fastapi" --openai |
        tee -a "$out/results.jsonl"
done
python3 bench/serve_equal_p99.py "$out/results.jsonl" --reference sentence-transformers+fastapi | tee "$out/equal_p99.jsonl"
