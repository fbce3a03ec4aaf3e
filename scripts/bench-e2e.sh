#!/usr/bin/env bash
# End-to-end load comparison in one run: rotel (pass-through, from the PyPI package
# `rotel`) and casefile (the example policies), the same load from casefile-load, each
# exporting with gzip to the load tool's own OTLP sink. Loopback only; bounded in time.
# usage: scripts/bench-e2e.sh [SECONDS] [CONNECTIONS]   (ONLY=memory: just the memory part)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CONNS=${2:-4}
OUT=bench-out
mkdir -p "$OUT"
cargo build --release --quiet --bin casefile --bin casefile-load

ROTEL="$OUT/rotel/rotel/rotel-agent"
if [ ! -x "$ROTEL" ]; then
  rm -rf "$OUT/wheel" "$OUT/rotel"
  python3 -m pip download --quiet --no-deps rotel -d "$OUT/wheel"
  python3 -m zipfile -e "$OUT"/wheel/rotel-*.whl "$OUT/rotel"
  chmod +x "$ROTEL"
fi

cat > "$OUT/casefile-bench.yaml" <<YAML
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
  api: { endpoint: 127.0.0.1:28990 }
logging: { level: warn }
YAML

# The same without the support layer (no index, no rescue buffer), to show what it costs.
sed -e 's/^support:/support:\n  index: { attributes: [] }\n  complaints: { rescue_window: 0s }/' "$OUT/casefile-bench.yaml" > "$OUT/casefile-core.yaml"

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_port() { for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

run_one() { # name, expect flag, command...
  local name=$1 expect=$2; shift 2
  "$@" > "$OUT/$name.log" 2>&1 &
  local pid=$!
  wait_port 24317
  local t0; t0=$(cpu_ticks $pid)
  local report; report=$(target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 \
      --connections "$CONNS" --spans-per-request 500 --spans-per-trace 10 --seconds "$SECS" --drain-seconds 30 $expect)
  local t1; t1=$(cpu_ticks $pid)
  local rss; rss=$(peak_rss_kb $pid)
  if [ "$name" = casefile ]; then curl -s http://127.0.0.1:28990/metrics > "$OUT/casefile.metrics" || true; fi
  kill -TERM $pid; wait $pid || true
  local hz; hz=$(getconf CLK_TCK)
  python3 - "$name" "$report" "$((t1 - t0))" "$hz" "$rss" <<'PY'
import json, sys
name, report, ticks, hz, rss = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
cpu = ticks / hz
spans = max(report["accepted_spans"], 1)
print(f"{name:9} {report['accepted_spans_per_sec']:>12,.0f} spans/s  {cpu / spans * 1e6:6.2f} us CPU/span  "
      f"peak RSS {rss / 1024:7.1f} MiB  refused {report['refused_spans']}  "
      f"expected traces whole {report['expected_traces_whole']}/{report['expected_traces']}  downstream spans {report['downstream_spans']}")
PY
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load: $CONNS connections, 500 spans/request, 10-span traces, gzip, ${SECS}s"
if [ "${ONLY:-}" != memory ]; then
run_one rotel --expect-all "$ROTEL" start --otlp-grpc-endpoint 127.0.0.1:24317 --otlp-http-endpoint 127.0.0.1:24319 \
  --otlp-grpc-max-recv-msg-size-mib 64 --exporter otlp --otlp-exporter-endpoint http://127.0.0.1:24318 --pid-file "$OUT/rotel.pid" --log-file "$OUT/rotel-agent.log"
run_one casefile "" target/release/casefile run --config "$OUT/casefile-bench.yaml"
run_one core "" target/release/casefile run --config "$OUT/casefile-core.yaml"

# Decision delay past the deadline, from casefile's own histogram.
python3 - "$OUT/casefile.metrics" <<'PY'
import re, sys
buckets = []
for line in open(sys.argv[1]):
    m = re.match(r'casefile_processor_tail_sampling_sampling_decision_delay_seconds_bucket\{.*le="([^"]+)".*\} (\S+)', line)
    if m:
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
def q(p):
    for le, n in buckets:
        if n >= p * total:
            return le
print(f"casefile  decision delay past the deadline over {total:,.0f} decisions: p50 <= {q(0.5) * 1000:g} ms, p99 <= {q(0.99) * 1000:g} ms")
PY
fi

# Memory per buffered span: a window longer than the run holds the spans; RSS growth over
# the spans held. Two figures: from start to 1 M spans held (includes what the daemon
# allocates once under load: connection buffers, thread heaps), and the slope from 1 M to
# 2 M spans (what each further buffered span costs). casefile's own gauge counts each span's
# encoded bytes plus its 48-byte record (model::Span), which gives the encoded size.
# Twice: the buffer alone (support layer off), and with the index on (which also holds an
# entry for every pending trace with a user id).
hold() { # name, config
  sed -e 's/decision_wait: 2s/decision_wait: 1h/' -e 's/num_traces: 1000000/num_traces: 5000000/' \
      -e 's/max_buffer_bytes: 2GiB/max_buffer_bytes: 8GiB/' "$2" > "$OUT/hold-$1.yaml"
  ${HOLD_ENV:-} target/release/casefile run --config "$OUT/hold-$1.yaml" > "$OUT/hold-$1.log" 2>&1 &
  local pid=$!
  wait_port 24317
  local rss=() held
  rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
  for salt in 1 2; do
    target/release/casefile-load --target 127.0.0.1:24317 --sink 127.0.0.1:24318 --connections 4 --spans-per-request 500 \
      --spans-per-trace 10 --seconds 20 --max-requests 2000 --drain-seconds 1 --id-salt $salt > /dev/null
    sleep 1
    rss+=("$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")")
    [ $salt = 1 ] && held=$(curl -s http://127.0.0.1:28990/metrics | awk '/^casefile_processor_tail_sampling_sampling_bytes_on_memory/ {print $2}')
  done
  kill -KILL $pid; wait $pid 2>/dev/null || true
  python3 - "$1" "${rss[0]}" "${rss[1]}" "${rss[2]}" "$held" <<'PY'
import sys
name, r0, r1, r2, held = sys.argv[1], *(int(x) * 1024 for x in sys.argv[2:5]), float(sys.argv[5])
spans = 1_000_000
encoded = held / spans - 48
target = 1.2 * encoded + 64
print(f"memory ({name}): spans {encoded:.0f} B encoded each (target <= 1.2 x + 64 = {target:.0f} B a span); "
      f"RSS grew {(r1 - r0) / spans:.0f} B a span from start to 1 M held ({(r1 - r0) / spans / encoded:.2f} x), "
      f"{(r2 - r1) / spans:.0f} B a span from 1 M to 2 M held ({(r2 - r1) / spans / encoded:.2f} x)")
PY
}
hold core "$OUT/casefile-core.yaml"
hold support "$OUT/casefile-bench.yaml"
