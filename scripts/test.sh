#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup.sh). The MiniLM parity tests, the
# Python round-trip tests and the Chromium test of the HTML view are required here, not skipped.
#   1. gates: rustfmt, clippy with warnings denied, rustdoc with warnings denied
#   2. every test, on this CPU's own kernels, the documentation's examples (doc tests) and
#      examples/ run on the fixtures as a user would run them
#   3. the numerics tests again on other CPUs' kernel paths (AVX2, and no vector extension at
#      all), so a tolerance that holds only on the CPU it was written on fails here first
# Extra arguments go to step 2's `cargo test` (e.g. a test name).
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTKIT_REQUIRE_MINILM=1 BERTKIT_REQUIRE_PYTHON=1 BERTKIT_REQUIRE_CHROMIUM=1

section() { printf '\n== %s\n' "$*"; }

# --release everywhere: the same profile as setup.sh's build, so the dependency tree compiled
# there is reused instead of compiled a second time (the dev profile).
section "gates: cargo fmt --check, clippy -D warnings, rustdoc -D warnings"
cargo fmt --check
cargo clippy --release --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --release --no-deps --quiet

section "tests on this CPU's kernels"
cargo test --release --all-targets "$@"
cargo test --release --doc "$@"

section "examples/ on the fixtures"
for example in finetune predict embed serve; do  # predict and serve read what finetune wrote
    cargo run --release --quiet --example "$example" >"target/example-$example.log" 2>&1 ||
        { cat "target/example-$example.log"; exit 1; }
    tail -n 2 "target/example-$example.log"
done

# libtorch picks its vector kernels by ATEN_CPU_CAPABILITY, oneDNN by ONEDNN_MAX_CPU_ISA, MKL
# by MKL_ENABLE_INSTRUCTIONS and fbgemm (int8) by FBGEMM_ENABLE_INSTRUCTIONS: together they run
# the code paths of a CPU without AVX-512 (avx2)
# or without any vector extension libtorch uses (default). The tests here compare float32 results
# (tests/common: Drift) or claim bit-exactness where the arithmetic is the same by construction.
# (Not the Python round trips: they spend 4 minutes starting Python, and compare the same
# parity on the reference's side.)
numerics=(--test parity --test first_token --test gradient_checkpointing --test explain --test attention
    --test embedding --test rerank --test question_answering --test multiple_choice --test unpadded --test int8)
exact=(two_ranks evaluation_on_two_ranks a_resumed)
for capability in avx2 default; do
    section "numerics tests on the $capability kernel path"
    ATEN_CPU_CAPABILITY=$capability ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        cargo test --release "${numerics[@]}"
    ATEN_CPU_CAPABILITY=$capability ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        cargo test --release --test distributed -- "${exact[@]}"
done
