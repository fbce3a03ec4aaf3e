#!/usr/bin/env bash
# What the support layer costs at ingest: the same load as scripts/bench-e2e.sh against
# casefile with the support layer off, with only the index on (1 M traces, filling),
# with a small index (steady state) and with everything on. Loopback only, bounded.
# usage: scripts/bench-support.sh [SECONDS]   (run scripts/bench-e2e.sh once first)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=bench-out
[ -f "$OUT/casefile-bench.yaml" ] || { echo "run scripts/bench-e2e.sh first (it writes $OUT/casefile-bench.yaml)" >&2; exit 1; }
cargo build --release --quiet --bin casefile --bin casefile-load
add_support() { sed -e "s/^support:/support:\n$1/" "$OUT/casefile-bench.yaml"; }
add_support '  index: { attributes: [] }\n  complaints: { rescue_window: 0s }' > "$OUT/support-off.yaml"
add_support '  complaints: { rescue_window: 0s }' > "$OUT/index-only.yaml"
add_support '  index: { max_traces: 20000 }\n  complaints: { rescue_window: 0s }' > "$OUT/index-small.yaml"
cp "$OUT/casefile-bench.yaml" "$OUT/support-on.yaml"

for name in support-off index-only index-small support-on; do
  scripts/bench-one.sh "$name" "$OUT/$name.yaml" "$SECS"
done
