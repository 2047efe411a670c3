#!/usr/bin/env bash
# The whole test suite, as CI runs it (after scripts/setup.sh). The MiniLM parity tests, the
# Python round-trip tests and the Chromium test of the HTML view are required here, not skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
export BERTKIT_REQUIRE_MINILM=1 BERTKIT_REQUIRE_PYTHON=1 BERTKIT_REQUIRE_CHROMIUM=1
# --release: the same profile as setup.sh's build, so the dependency tree compiled there is reused
# instead of compiled a second time (the dev profile), and the tests run optimised code.
cargo test --release --all-targets "$@"
