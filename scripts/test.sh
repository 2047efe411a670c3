#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup.sh). The MiniLM parity tests, the
# Python round-trip tests and the Chromium test of the HTML view are required here, not skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTKIT_REQUIRE_MINILM=1 BERTKIT_REQUIRE_PYTHON=1 BERTKIT_REQUIRE_CHROMIUM=1
cargo test --all-targets "$@"
