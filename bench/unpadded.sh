#!/usr/bin/env bash
# Unpadded execution against the padded path, interleaved on this machine (`bertkit bench`,
# all-MiniLM-L6-v2, fp32): batches of random lengths from --min-len to --seq-len, run with
# --unpad never and --unpad always. Prints one line per run and the speed-up per setting; the
# padding share is that of the timed batches. Usage: bash bench/unpadded.sh [ROUNDS] [MODEL]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
MODEL=${2:-.models/all-MiniLM-L6-v2}
cargo build --release --quiet
B=target/release/bertkit
grep -o -w 'avx2\|avx512f\|avx512_vnni\|avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
run() { "$B" -q bench --model "$MODEL" --device cpu --precision fp32 "$@" 2>/dev/null; }
for setting in "inference 32 128 128" "inference 32 128 116" "inference 32 128 96" "inference 32 128 64" \
               "inference 32 256 16" "finetune 16 128 116" "finetune 16 128 96" "finetune 16 128 64" \
               "finetune 8 512 16"; do
  read -r workload batch seq min <<<"$setting"
  steps=$([ "$workload" = inference ] && echo 8 || echo 4)
  for r in $(seq "$ROUNDS"); do
    for unpad in never always; do
      run --workload "$workload" --batch-size "$batch" --seq-len "$seq" --min-len "$min" --steps "$steps" --unpad "$unpad"
    done
  done
done | python3 bench/unpadded_table.py
