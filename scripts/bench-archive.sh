#!/usr/bin/env bash
# What the archive costs at ingest: the bench-e2e load against its casefile config (support
# layer on with its defaults: index, rescue ring) without and with `support.archive`
# (traces: all, in a temporary directory), interleaved ROUNDS times in one run. Prints
# spans/s, CPU per span, peak RSS and the archive's size; rotel's figure for the same load
# comes from scripts/bench-e2e.sh.
# Loopback only, bounded.
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
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s a run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  scripts/bench-one.sh "off-$round" "$OUT/casefile-bench.yaml" "$SECS"
  rm -rf "$DIR/archive"
  DISK_DIR="$DIR" scripts/bench-one.sh "archive-$round" "$OUT/archive-on.yaml" "$SECS"
done
