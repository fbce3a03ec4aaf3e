#!/usr/bin/env bash
# What the write-ahead log costs at ingest: the load of scripts/bench-e2e.sh (support layer
# off) against casefile in memory, with storage.dir (fsync: never, the default) and with
# fsync: always. Loopback only, bounded; the log goes to a temporary directory removed after.
# usage: scripts/bench-wal.sh [SECONDS]     (ONLY="wal-off wal-never" to pick runs)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
OUT=bench-out
mkdir -p "$OUT"
cargo build --release --quiet --bin casefile --bin casefile-load
WAL_DIR=$(mktemp -d)
trap 'rm -rf "$WAL_DIR"' EXIT
cat > "$OUT/wal-off.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:24317, max_recv_msg_size_mib: 64 }
processors:
  tail_sampling:
    decision_wait: 2s
    num_traces: 1000000
    max_buffer_bytes: 2GiB
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 500 } }
      - name: premium
        type: string_attribute
        string_attribute: { key: user.tier, values: [premium, vip] }
      - { name: baseline, type: probabilistic, probabilistic: { sampling_percentage: 5 } }
exporters:
  otlp: { endpoint: 127.0.0.1:24318, tls: { insecure: true }, compression: gzip }
support:
  api: { endpoint: "" }
  index: { attributes: [] }
  complaints: { rescue_window: 0s, store: $WAL_DIR/complaints.db }
logging: { level: warn }
YAML
{ cat "$OUT/wal-off.yaml"; echo "storage: { dir: $WAL_DIR/never, fsync: never }"; } > "$OUT/wal-never.yaml"
{ cat "$OUT/wal-off.yaml"; echo "storage: { dir: $WAL_DIR/always, fsync: always }"; } > "$OUT/wal-always.yaml"

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s"
for name in ${ONLY:-wal-off wal-never wal-always}; do
  target/release/casefile run --config "$OUT/$name.yaml" > "$OUT/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/24317) 2>/dev/null && break; sleep 0.1; done
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 \
    --spans-per-request 500 --spans-per-trace 10 --seconds "$SECS" --drain-seconds 4)
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  disk=$(du -sm "$WAL_DIR" | cut -f1)
  kill -TERM $pid; wait $pid || true
  python3 - "$name" "$report" "$((t1 - t0))" "$(getconf CLK_TCK)" "$disk" <<'PY'
import json, sys
name, r, ticks, hz, disk = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
print(f"{name:11} {r['accepted_spans_per_sec']:>10,.0f} spans/s  {ticks / hz / max(r['accepted_spans'], 1) * 1e6:5.2f} us CPU/span  "
      f"refused {r['refused_spans']}  must-keep whole {r['expected_traces_whole']}/{r['expected_traces']}  log dir {disk} MiB before stop")
PY
done
