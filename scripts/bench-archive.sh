#!/usr/bin/env bash
# What the archive costs at ingest: the bench-e2e load against its casefile config (support
# layer on with its defaults: index, rescue ring) without and with `support.archive`
# (traces: all, in a temporary directory), interleaved ROUNDS times in one run. Prints
# spans/s, CPU per span, peak RSS and the archive's size; rotel's figure for the same load
# comes from scripts/bench-e2e.sh.
# Loopback only, bounded.
# BEFORE=path/to/casefile: also that build with the archive on, each round (before/after);
# NORING=1: also the archive on with the rescue ring off (rescue_window: 0s), each round.
# usage: scripts/bench-archive.sh [SECONDS] [ROUNDS]   (run scripts/bench-e2e.sh once first)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
OUT=bench-out
[ -f "$OUT/casefile-bench.yaml" ] || { echo "run scripts/bench-e2e.sh first (it writes $OUT/casefile-bench.yaml)" >&2; exit 1; }
cargo build --release --quiet --bin casefile --bin casefile-load
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
sed -e "s|^support:|support:\n  archive: { dir: $DIR/archive, retention: 72h, max_bytes: 20GiB, traces: all }|" \
    "$OUT/casefile-bench.yaml" > "$OUT/archive-on.yaml"
sed -e "s|^support:|support:\n  complaints: { rescue_window: 0s }|" "$OUT/archive-on.yaml" > "$OUT/archive-on-noring.yaml"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s a run, $ROUNDS rounds"
# rotel on the same load first, for the side-by-side figure (bench-e2e.sh fetched it).
ROTEL="$OUT/rotel/rotel/rotel-agent"
if [ -x "$ROTEL" ]; then
  "$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:24317 --otlp-http-endpoint 127.0.0.1:24319 \
    --otlp-grpc-max-recv-msg-size-mib 64 --exporter otlp --otlp-exporter-endpoint http://127.0.0.1:24318 \
    --pid-file "$OUT/rotel.pid" --log-file "$OUT/rotel-agent.log" > "$OUT/rotel.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/24317) 2>/dev/null && break; sleep 0.1; done
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 \
    --spans-per-request 500 --spans-per-trace 10 --seconds "$SECS" --drain-seconds 4 --expect-all)
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill -TERM $pid; wait $pid || true
  python3 - "$report" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
r, ticks, hz = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"rotel        {r['accepted_spans_per_sec']:>10,.0f} spans/s  {ticks / hz / max(r['accepted_spans'], 1) * 1e6:5.2f} us CPU/span")
PY
fi
for round in $(seq 1 "$ROUNDS"); do
  scripts/bench-one.sh "off-$round" "$OUT/casefile-bench.yaml" "$SECS"
  if [ -n "${BEFORE:-}" ]; then
    rm -rf "$DIR/archive"
    BIN="$BEFORE" DISK_DIR="$DIR" scripts/bench-one.sh "before-$round" "$OUT/archive-on.yaml" "$SECS"
  fi
  rm -rf "$DIR/archive"
  DISK_DIR="$DIR" scripts/bench-one.sh "archive-$round" "$OUT/archive-on.yaml" "$SECS"
  if [ "${NORING:-}" = 1 ]; then
    rm -rf "$DIR/archive"
    DISK_DIR="$DIR" scripts/bench-one.sh "noring-$round" "$OUT/archive-on-noring.yaml" "$SECS"
  fi
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
