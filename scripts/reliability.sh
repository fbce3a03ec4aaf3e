#!/usr/bin/env bash
# The fault tests, counted: runs the end-to-end tests that break something (backend down,
# a poisoned span among good ones,
# full export queue, policy reload mid-stream, kill -9, corrupt log tail), each on loopback
# and bounded, and prints RELIABILITY.md's table of spans accepted vs delivered from the
# rows they write (tests/common/report.rs). The tests themselves fail on any loss.
# usage: scripts/reliability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-out
out="$PWD/bench-out/reliability.jsonl"
rm -f "$out"
CASEFILE_RELIABILITY_OUT="$out" cargo nextest run --no-fail-fast --test faults --test durability --test poison
python3 - "$out" <<'PY'
import collections, json, re, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# Poison rows (tests/poison.rs) are summed per case over transports and downstreams.
poison = collections.defaultdict(collections.Counter)
faults = []
for r in rows:
    m = re.match(r"poison: (.*) \((.*)\)$", r["test"])
    if m:
        c = poison[m.group(1)]
        c.update({k: r[k] for k in ("kept_accepted", "delivered", "duplicates")})
        c["runs"] += 1
    else:
        faults.append(r)
print("| fault test | spans sent | acknowledged | refused (throttled) | acknowledged, of kept traces | delivered | lost | duplicates |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for r in sorted(faults, key=lambda r: r["test"]):
    lost = r["kept_accepted"] - r["delivered"]
    print(f"| {r['test']} | {r['sent']} | {r['accepted']} | {r['refused']} | {r['kept_accepted']} | {r['delivered']} | {lost} | {r['duplicates']} |")
print()
print("| poison among good kept traces | runs (gRPC/HTTP x prost/Python) | good spans sent | delivered | lost | duplicates |")
print("|---|---:|---:|---:|---:|---:|")
for case, c in sorted(poison.items()):
    print(f"| {case} | {c['runs']} | {c['kept_accepted']} | {c['delivered']} | {c['kept_accepted'] - c['delivered']} | {c['duplicates']} |")
PY
