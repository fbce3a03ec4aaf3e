#!/usr/bin/env bash
# Installs what the support console browser test (tests/console.rs) needs: Chromium at
# /usr/bin/chromium and playwright-core in tests/console/node_modules. Idempotent and
# quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing Chromium"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO="sudo"
    else
      echo "setup: Chromium is missing and this is not root (no sudo): install the chromium package" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -d tests/console/node_modules/playwright-core ]; then
  echo "setup: installing playwright-core for the console test"
  (cd tests/console && { npm ci --no-audit --no-fund --loglevel=error 2>/dev/null \
    || npm install --no-audit --no-fund --loglevel=error; })
fi
