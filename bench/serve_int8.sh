#!/usr/bin/env bash
# `bertkit serve` of an int8 model (bertkit quantize) against the same server on the float model
# it came from: serve_load.sh's load (one IMDB review per request, max-len 128, fp32 elsewhere),
# per concurrency level the float server then the int8 one, each for DURATION seconds, then
# the int8 server's throughput at equal p99 (bench/serve_equal_p99.py, float as the reference).
# Usage: [DURATION=20 LEVELS="1 4 16"] bash bench/serve_int8.sh FLOAT_DIR INT8_DIR [OUT_DIR]
# (needs pip packages aiohttp, and ../shared/data for the texts)
set -euo pipefail
cd "$(dirname "$0")/.."
float=${1:?a fine-tuned float model} int8=${2:?its int8 directory}
out=${3:-bench/out/serve-int8}
mkdir -p "$out"
cargo build --release --quiet
python3 bench/serve_texts.py "$out/texts.txt"
echo "cpu: $(grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
serve() { exec target/release/bertkit serve --model "$1" --port "$2" --precision fp32 --max-len 128 --device cpu -q; }
serve "$float" 18082 > "$out/float.log" 2>&1 &
fp=$!
serve "$int8" 18083 > "$out/int8.log" 2>&1 &
q=$!
trap 'kill $fp $q 2>/dev/null || true' EXIT
for port in 18082 18083; do
    until curl -sf "localhost:$port/health" >/dev/null; do sleep 1; done
done
: > "$out/results.jsonl"
for c in ${LEVELS:-1 4 16}; do
    python3 bench/serve_load.py --url http://127.0.0.1:18082/predict --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $fp --name float32 | tee -a "$out/results.jsonl"
    python3 bench/serve_load.py --url http://127.0.0.1:18083/predict --texts "$out/texts.txt" --concurrency "$c" \
        --seconds "${DURATION:-20}" --pid $q --name int8 | tee -a "$out/results.jsonl"
done
python3 bench/serve_equal_p99.py "$out/results.jsonl" --ours int8 --reference float32 | tee "$out/equal_p99.jsonl"
