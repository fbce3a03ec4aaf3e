#!/usr/bin/env bash
# Overload soak (issue 4): casefile with a small memory budget, loaded at twice the rate it
# sustains, for MINUTES. Reports resident memory (start, max, end, slope over the second
# half, sampled every second), requests refused as the clients saw them against the
# daemon's refusal counters, whether the process is alive at the end, and traces delivered.
# Loopback only; bounded in time (MINUTES ≤ 60) and in requests.
# usage: scripts/soak.sh [MINUTES]      (LIMIT_MIB=256 CONNS=8 to change the budget, clients)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-5}
[ "$MINUTES" -ge 1 ] && [ "$MINUTES" -le 60 ] || { echo "MINUTES must be 1..60" >&2; exit 2; }
LIMIT_MIB=${LIMIT_MIB:-256}
CONNS=${CONNS:-8}
OUT=bench-out/soak
mkdir -p "$OUT"
cargo build --release --quiet --bin casefile --bin casefile-load

GRPC=127.0.0.1:34317 SINK=127.0.0.1:34318 API=127.0.0.1:38990
cat > "$OUT/soak.yaml" <<YAML
receivers:
  otlp:
    protocols:
      grpc: { endpoint: $GRPC, max_recv_msg_size_mib: 16 }
processors:
  tail_sampling:
    decision_wait: 10s
    decision_wait_after_root_received: 2s
    num_traces: 1000000
    # max_buffer_bytes unset: derived from the memory limit below.
    policies:
      - { name: errors, type: status_code, status_code: { status_codes: [ERROR] } }
      - { name: slow, type: latency, latency: { threshold_ms: 500 } }
      - name: premium
        type: string_attribute
        string_attribute: { key: user.tier, values: [premium, vip] }
      - { name: baseline, type: probabilistic, probabilistic: { sampling_percentage: 5 } }
  memory_limiter: { check_interval: 100ms, limit_mib: $LIMIT_MIB }
exporters:
  otlp: { endpoint: $SINK, tls: { insecure: true }, compression: gzip }
support:
  api: { endpoint: $API }
  index: { max_traces: 50000 }
  complaints: { rescue_max_bytes: 16MiB }
logging: { level: info }
YAML

wait_port() { for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
start_casefile() { # log file; sets PID
  target/release/casefile run --config "$OUT/soak.yaml" > "$1" 2>&1 &
  PID=$!
}
PID=
cleanup() { [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true; }
trap cleanup EXIT

echo "machine: $(nproc) cores (shared), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
target/release/casefile check --config "$OUT/soak.yaml" | grep -E 'memory|buffer bound'

# 1. The sustainable rate: as fast as 4 connections get answers, 30 s, fresh daemon.
start_casefile "$OUT/measure.log"; wait_port 34317
MEASURE=$(target/release/casefile-load --target $GRPC --sink $SINK --connections 4 --spans-per-request 500 \
  --spans-per-trace 10 --seconds 30 --drain-seconds 15)
kill -TERM "$PID"; wait "$PID" || true; PID=
RATE=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(int(r["accepted_spans_per_sec"]))' "$MEASURE")
echo "sustainable: $RATE spans/s accepted (refused requests $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["refused_requests"])' "$MEASURE"))"

# 2. Twice that for MINUTES, resident memory sampled every second.
SECS=$((MINUTES * 60))
start_casefile "$OUT/soak.log"; wait_port 34317
: > "$OUT/rss.tsv"
( t=0; while kill -0 "$PID" 2>/dev/null && [ $t -le $((SECS + 60)) ]; do
    echo "$t $(rss_kb "$PID")" >> "$OUT/rss.tsv"; sleep 1; t=$((t + 1)); done ) &
SAMPLER=$!
MAX_REQ=$(( 2 * RATE * SECS / 500 + 1000 ))
REPORT=$(target/release/casefile-load --target $GRPC --sink $SINK --connections "$CONNS" --spans-per-request 500 \
  --spans-per-trace 10 --seconds "$SECS" --rate $((2 * RATE)) --max-requests "$MAX_REQ" --drain-seconds 30)
ALIVE=no; kill -0 "$PID" 2>/dev/null && ALIVE=yes
HEALTH=$(curl -s -o /dev/null -w '%{http_code}' "http://$API/healthz" || echo 000)
curl -s "http://$API/metrics" > "$OUT/soak.metrics" || true
kill "$SAMPLER" 2>/dev/null || true
kill -TERM "$PID"; wait "$PID" && EXIT=0 || EXIT=$?; PID=
echo "$REPORT" > "$OUT/load.json"
grep -E 'memory|refusing|accepting again' "$OUT/soak.log" | tail -n 5 || true

python3 - "$OUT" "$REPORT" "$ALIVE" "$HEALTH" "$EXIT" "$RATE" "$SECS" <<'PY'
import json, re, sys
out, report, alive, health, code, rate, secs = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:]
secs = int(secs)
rss = [(int(t), int(kb) / 1024) for t, kb in (l.split() for l in open(f"{out}/rss.tsv")) if int(kb) > 0]
load = [(t, m) for t, m in rss if t <= secs]
half = [(t, m) for t, m in load if t >= secs / 2]
n = len(half)
mt = sum(t for t, _ in half) / n
mm = sum(m for _, m in half) / n
slope = sum((t - mt) * (m - mm) for t, m in half) / max(sum((t - mt) ** 2 for t, _ in half), 1e-9)
counters = {}
for line in open(f"{out}/soak.metrics"):
    m = re.match(r'(casefile_receiver_refused_requests_total|casefile_processor_tail_sampling_sampling_decision_total)\{(.*)\} (\S+)', line)
    if m:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = (m.group(1), labels.get("reason") or labels.get("trigger"))
        counters[key] = counters.get(key, 0) + float(m.group(3))
refused = {k[1]: int(v) for k, v in counters.items() if k[0].startswith("casefile_receiver")}
early = {k[1]: int(v) for k, v in counters.items() if k[0].endswith("decision_total")}
daemon_refused = sum(refused.values())
print(f"load: {2 * int(rate):,} spans/s offered for {secs} s ({report['seconds']:.0f} s sent), "
      f"{report['accepted_spans_per_sec']:,.0f} spans/s accepted")
print(f"RSS MiB: start {load[0][1]:.1f}, max {max(m for _, m in load):.1f}, end {load[-1][1]:.1f}, "
      f"mean of second half {mm:.1f}, slope over second half {slope * 60:+.2f} MiB/min ({len(rss)} samples)")
print(f"refused requests: clients {report['refused_requests']}, daemon {daemon_refused} {refused} -> "
      f"{'MATCH' if daemon_refused == report['refused_requests'] else 'MISMATCH'}; other client errors {report['failed_requests']}")
print(f"accepted requests {report['accepted_requests']}; decisions by trigger {early}")
print(f"delivered: {report['downstream_spans']:,} spans, {report['downstream_traces']:,} traces; must-keep traces whole "
      f"{report['expected_traces_whole']:,}/{report['expected_traces']:,}")
print(f"process alive at the end: {alive}, /healthz {health}, exit code after SIGTERM {code}")
PY
