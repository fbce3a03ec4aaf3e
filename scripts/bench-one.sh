#!/usr/bin/env bash
# One benchmark run, shared by scripts/bench-support.sh and scripts/bench-wal.sh: starts the
# release casefile on CONFIG (OTLP/gRPC on 127.0.0.1:24317, exporting to the load tool's
# sink on :24318), drives the bench-e2e load for SECONDS over loopback, reads the daemon's
# CPU time and peak RSS from /proc, stops it and prints one line. Bounded: the load tool
# stops after SECONDS plus its drain. DISK_DIR (optional): a directory whose size is shown.
# BIN (optional): the casefile binary to run (default target/release/casefile).
# usage: scripts/bench-one.sh NAME CONFIG SECONDS
set -euo pipefail
name=$1 cfg=$2 secs=$3
OUT=bench-out
"${BIN:-target/release/casefile}" run --config "$cfg" > "$OUT/$name.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/24317) 2>/dev/null && break; sleep 0.1; done
t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 \
  --spans-per-request 500 --spans-per-trace 10 --seconds "$secs" --drain-seconds 4)
t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
# The archive writer thread's own CPU (ticks), when there is one.
writer=$(for t in /proc/$pid/task/*; do if [ "$(cat "$t/comm" 2>/dev/null)" = casefile-archiv ]; then awk '{print $14+$15}' "$t/stat"; fi; done | awk '{s+=$1} END {print s+0}')
disk=$([ -n "${DISK_DIR:-}" ] && du -sm "$DISK_DIR" | cut -f1 || echo -)
kill -TERM $pid; wait $pid || true
python3 - "$name" "$report" "$((t1 - t0))" "$(getconf CLK_TCK)" "$rss" "$disk" "$writer" <<'PY'
import json, sys
name, r, ticks, hz, rss, disk, writer = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
line = (f"{name:12} {r['accepted_spans_per_sec']:>10,.0f} spans/s  {ticks / hz / max(r['accepted_spans'], 1) * 1e6:5.2f} us CPU/span  "
        f"peak RSS {rss / 1024:6.0f} MiB  refused {r['refused_spans']}  must-keep whole {r['expected_traces_whole']}/{r['expected_traces']}")
if disk != "-":
    line += f"  {disk} MiB on disk before stop"
if writer:
    line += f"  archive writer {writer / hz / max(r['accepted_spans'], 1) * 1e6:4.2f} us/span"
print(line)
PY
