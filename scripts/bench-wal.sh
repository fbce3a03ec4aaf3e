#!/usr/bin/env bash
# What the write-ahead log costs at ingest: the load of scripts/bench-e2e.sh against its
# config (support layer off) in memory, with storage.dir (fsync: never, the default) and
# with fsync: always. Loopback only, bounded; the log goes to a temporary directory
# removed after.
# usage: scripts/bench-wal.sh [SECONDS]   (run scripts/bench-e2e.sh once first;
#                                          ONLY="wal-off wal-never" to pick runs)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=bench-out
[ -f "$OUT/casefile-bench.yaml" ] || { echo "run scripts/bench-e2e.sh first (it writes $OUT/casefile-bench.yaml)" >&2; exit 1; }
cargo build --release --quiet --bin casefile --bin casefile-load
WAL_DIR=$(mktemp -d)
trap 'rm -rf "$WAL_DIR"' EXIT
sed -e "s|^support:.*|support:\n  api: { endpoint: \"\" }\n  index: { attributes: [] }\n  complaints: { rescue_window: 0s, store: $WAL_DIR/complaints.db }|" \
    -e '/^  api: { endpoint: 127/d' "$OUT/casefile-bench.yaml" > "$OUT/wal-off.yaml"
{ cat "$OUT/wal-off.yaml"; echo "storage: { dir: $WAL_DIR/never, fsync: never }"; } > "$OUT/wal-never.yaml"
{ cat "$OUT/wal-off.yaml"; echo "storage: { dir: $WAL_DIR/always, fsync: always }"; } > "$OUT/wal-always.yaml"

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s"
for name in ${ONLY:-wal-off wal-never wal-always}; do
  DISK_DIR=$WAL_DIR scripts/bench-one.sh "$name" "$OUT/$name.yaml" "$SECS"
done
