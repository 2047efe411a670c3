#!/usr/bin/env bash
# The benchmark: bertkit against the PyTorch reference on this machine (see bench/run.py --help).
# Needs scripts/setup.sh (PyTorch, transformers, all-MiniLM-L6-v2) and ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/run.py "$@"
