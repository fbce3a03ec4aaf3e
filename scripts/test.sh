#!/usr/bin/env bash
# Runs every test: installs what the interop and browser tests need (a Python venv with the
# OpenTelemetry SDK, the OpenTelemetry JS packages), then the whole cargo test suite, then
# the fuzz targets for a bounded time (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-tests.sh
export CASEFILE_PYTHON="$PWD/.venv/bin/python"
export CASEFILE_NODE_MODULES="$PWD/tests/interop/js/node_modules"
cargo nextest run --no-fail-fast --profile ci "$@"
# Then each fuzz target for a bounded time (FUZZ_SECONDS each, 20 by default; 0 skips).
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  scripts/fuzz.sh all "${FUZZ_SECONDS:-20}"
fi
