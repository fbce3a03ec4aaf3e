#!/usr/bin/env bash
# What forwarding costs in a tier: the bench-e2e load against one casefile, then against a
# tier of two members on this machine (member A on :24317, B on :24417, both exporting to
# the load tool's sink), the load tool sending everything to A, which forwards the spans of
# the traces B owns (about half). Interleaved ROUNDS times. Prints spans/s, the CPU per span
# of the whole tier (both processes) and whether every must-keep trace arrived whole.
# Loopback only, bounded (the load tool stops after SECONDS plus its drain).
# usage: scripts/bench-cluster.sh [SECONDS] [ROUNDS]   (run scripts/bench-e2e.sh once first)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
OUT=bench-out
[ -f "$OUT/casefile-bench.yaml" ] || { echo "run scripts/bench-e2e.sh first (it writes $OUT/casefile-bench.yaml)" >&2; exit 1; }
cargo build --release --quiet --bin casefile --bin casefile-load
cluster="cluster:\n  self: SELF\n  peers: [{ otlp: \"127.0.0.1:24317\", api: \"127.0.0.1:28990\" }, { otlp: \"127.0.0.1:24417\", api: \"127.0.0.1:28991\" }]"
sed -e "\$a$cluster" "$OUT/casefile-bench.yaml" | sed -e "s/SELF/\"127.0.0.1:24317\"/" > "$OUT/member-a.yaml"
sed -e "\$a$cluster" -e "s/127.0.0.1:24317, max/127.0.0.1:24417, max/" -e "s/127.0.0.1:28990 }/127.0.0.1:28991 }/" \
    "$OUT/casefile-bench.yaml" | sed -e "s/SELF/\"127.0.0.1:24417\"/" > "$OUT/member-b.yaml"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s a run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  scripts/bench-one.sh "single-$round" "$OUT/casefile-bench.yaml" "$SECS"
  target/release/casefile run --config "$OUT/member-b.yaml" > "$OUT/member-b.log" 2>&1 &
  b=$!
  target/release/casefile run --config "$OUT/member-a.yaml" > "$OUT/member-a.log" 2>&1 &
  a=$!
  for port in 24317 24417; do
    for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  done
  t0=$(( $(ticks $a) + $(ticks $b) ))
  report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 \
    --spans-per-request 500 --spans-per-trace 10 --seconds "$SECS" --drain-seconds 4)
  t1=$(( $(ticks $a) + $(ticks $b) ))
  forwarded=$(curl -s http://127.0.0.1:28990/metrics | awk '/^casefile_cluster_forwarded_spans_total/ {s+=$2} END {print s+0}')
  here=$(curl -s http://127.0.0.1:28990/metrics | awk '/^casefile_cluster_decided_here_spans_total/ {s+=$2} END {print s+0}')
  kill -TERM $a $b; wait $a $b || true
  python3 - "tier-$round" "$report" "$((t1 - t0))" "$(getconf CLK_TCK)" "$forwarded" "$here" <<'PY'
import json, sys
name, r, ticks, hz, fwd, here = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
n = max(r['accepted_spans'], 1)
print(f"{name:12} {r['accepted_spans_per_sec']:>10,.0f} spans/s  {ticks / hz / n * 1e6:5.2f} us CPU/span (both members)  "
      f"forwarded {fwd / n * 100:4.1f} %, kept by a full forwarder {here / n * 100:4.1f} %  refused {r['refused_spans']}  must-keep whole {r['expected_traces_whole']}/{r['expected_traces']}")
PY
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
