#!/usr/bin/env bash
# What the GPU issue measures, made to fit a lent GPU machine (the `device` tool: no Rust there,
# 10 minutes a command, 64 MiB travel with the working tree). See docs/gpu.md.
#
#   here:  bash bench/gpu_session.sh stage   # build; fill .gpu/ (git-ignored) with what must travel
#   there: bash bench/gpu_session.sh tests   # parity + gradient-checkpointing tests on CUDA
#          bash bench/gpu_session.sh steps   # benchmark workloads 8-12 (bert-base steps) vs PyTorch eager
#          bash bench/gpu_session.sh e2e     # workload 13: 1 epoch of IMDB with bert-base vs Trainer
# Each `there` command is one device run with carry [".gpu"]; results land in $OUT (or bench/out).
set -euo pipefail
cd "$(dirname "$0")/.."
stage=.gpu

case "${1:-}" in
stage)
    cargo build --release --quiet
    rm -rf "$stage" && mkdir -p "$stage/tokenizer"
    strip -o "$stage/bertkit" target/release/bertkit
    # The test binaries, found by name: cargo prints where it put them.
    for t in parity gradient_checkpointing; do
        bin=$(cargo test --release --no-run --test "$t" 2>&1 | grep -o "target/release/deps/$t-[0-9a-f]*" | head -1)
        strip -o "$stage/$t" "$bin"
    done
    # bert-base (random init) is made there by transformers; it borrows MiniLM's (= bert-base-uncased's)
    # vocabulary. MiniLM's weights (90 MB) do not fit in what travels and are not needed.
    for f in tokenizer.json vocab.txt tokenizer_config.json special_tokens_map.json; do
        cp ".models/all-MiniLM-L6-v2/$f" "$stage/tokenizer/"
    done
    cp ../shared/data/imdb/imdb_2500.csv "$stage/"
    du -sh "$stage"
    echo "now: device run with carry [\".gpu\"] and command: bash bench/gpu_session.sh tests|steps|e2e"
    ;;
tests | steps | e2e)
    [ -x "$stage/bertkit" ] || { echo "$stage/ is missing: run 'bash bench/gpu_session.sh stage' where Rust is, carry .gpu" >&2; exit 2; }
    out=${OUT:-bench/out}
    mkdir -p "$out" target/release .models/all-MiniLM-L6-v2 ../shared/data/imdb
    export LD_LIBRARY_PATH="$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib" PYTHONUNBUFFERED=1
    cp "$stage/bertkit" target/release/bertkit
    cp "$stage"/tokenizer/* .models/all-MiniLM-L6-v2/
    cp "$stage/imdb_2500.csv" ../shared/data/imdb/
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
    case "$1" in
    tests)
        export BERTKIT_TEST_DEVICE=cuda BERTKIT_REPO=$PWD
        # The tiny model's parity with transformers on CUDA (MiniLM's reference does not travel),
        # and gradient checkpointing's equal gradients with libtorch's CUDA backward thread.
        "$stage/parity" --test-threads=1 --nocapture tiny_model 2>&1 | tee "$out/tests.log"
        "$stage/gradient_checkpointing" --test-threads=1 --skip training_with_the_flag 2>&1 | tee -a "$out/tests.log"
        ;;
    steps) python3 bench/run.py --device cuda --only 8 9 10 11 12 --steps 50 --repeats 2 2>&1 | tee "$out/steps.log" ;;
    e2e) python3 bench/run.py --device cuda --only 13 --repeats 2 2>&1 | tee "$out/e2e.log" ;;
    esac
    cp bench/results-gpu.json "$out/" 2>/dev/null || true
    ;;
*)
    sed -n 2,9p "$0"
    exit 2
    ;;
esac
