#!/usr/bin/env bash
# Installs the test dependencies that are not Rust crates. Idempotent and quiet when
# everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, zstandard, lz4.frame, cramjam' 2>/dev/null; then
  echo "setup: creating .venv with the OpenTelemetry Python SDK and the compressors"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

if [ -f tests/interop/js/package.json ] && [ ! -d tests/interop/js/node_modules/@opentelemetry/exporter-trace-otlp-http ]; then
  echo "setup: installing the OpenTelemetry JS SDK"
  (cd tests/interop/js && npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error)
fi

# Chromium and playwright-core for the support console browser test.
scripts/setup-browser.sh
