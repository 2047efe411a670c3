#!/usr/bin/env bash
# Load test of `bertkit serve` against the Python reference (bench/serve_reference.py: a
# transformers pipeline behind FastAPI/uvicorn, batched the same way), same model, same
# machine, fp32, max-len 128, one text per request (IMDB reviews): for each concurrency level,
# bertkit then the reference, each for DURATION seconds; then the faults (bench/serve_faults.py) on
# bertkit. One JSON line per run; the client (aiohttp) shares the CPU with the server. Then
# the throughput of each at equal p99 latency (bench/serve_equal_p99.py), over all the levels.
# Usage: [DURATION=20 LEVELS="1 2 4 8 16 32"] bash bench/serve_load.sh [MODEL_DIR] [OUT_DIR]
# (MODEL_DIR: a fine-tuned classifier, e.g. target/demo/imdb from scripts/demo.sh;
#  needs pip packages fastapi uvicorn aiohttp, and ../shared/data for the texts)
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-target/demo/imdb}
out=${2:-bench/out/serve}
mkdir -p "$out"
cargo build --release --quiet
python3 bench/serve_texts.py "$out/texts.txt"
grep -o -m1 'avx512_bf16\|avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' > "$out/cpu_flags.txt"

target/release/bertkit serve --model "$model" --port 18080 --precision fp32 --max-len 128 --device cpu -q > "$out/bertkit.log" &
bk=$!
python3 bench/serve_reference.py --model "$model" --port 18081 --max-len 128 > "$out/reference.log" 2>&1 &
ref=$!
trap 'kill $bk $ref 2>/dev/null || true' EXIT
for port in 18080 18081; do
    until curl -sf "localhost:$port/health" >/dev/null; do sleep 1; done
done
: > "$out/results.jsonl"
for c in ${LEVELS:-1 2 4 8 16 32}; do
    python3 bench/serve_load.py --url http://127.0.0.1:18080/predict --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $bk --name bertkit | tee -a "$out/results.jsonl"
    python3 bench/serve_load.py --url http://127.0.0.1:18081/predict --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $ref --name "transformers+fastapi" | tee -a "$out/results.jsonl"
done
python3 bench/serve_equal_p99.py "$out/results.jsonl" | tee "$out/equal_p99.jsonl"
python3 bench/serve_faults.py --url http://127.0.0.1:18080 | tee "$out/faults.json"
