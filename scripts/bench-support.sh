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
  target/release/casefile run --config "$OUT/$name.yaml" > "$OUT/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/24317) 2>/dev/null && break; sleep 0.1; done
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 \
    --spans-per-request 500 --spans-per-trace 10 --seconds "$SECS" --drain-seconds 4)
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill -TERM $pid; wait $pid || true
  python3 - "$name" "$report" "$((t1 - t0))" "$(getconf CLK_TCK)" "$rss" <<'PY'
import json, sys
name, r, ticks, hz, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"{name:12} {r['accepted_spans_per_sec']:>10,.0f} spans/s  {ticks / hz / max(r['accepted_spans'], 1) * 1e6:5.2f} us CPU/span  "
      f"peak RSS {rss / 1024:6.0f} MiB  must-keep whole {r['expected_traces_whole']}/{r['expected_traces']}")
PY
done
