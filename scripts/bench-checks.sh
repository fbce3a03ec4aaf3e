#!/usr/bin/env bash
# What the ingest checks (UTF-8, wire types, nesting depth of every span; issue 9) cost on
# the core pipeline: the bench-e2e load against its core config (support layer off) with
# the current build and with a build of BASE (a commit before the checks), interleaved
# ROUNDS times in one run so both see the same machine. Loopback only, bounded.
# usage: scripts/bench-checks.sh [SECONDS] [ROUNDS] [BASE]
#        (run scripts/bench-e2e.sh once first; BASE defaults to b80cfab, the last commit
#         without the checks)
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
BASE=${3:-b80cfab}
OUT=bench-out
[ -f "$OUT/casefile-core.yaml" ] || { echo "run scripts/bench-e2e.sh first (it writes $OUT/casefile-core.yaml)" >&2; exit 1; }
cargo build --release --quiet --bin casefile --bin casefile-load
cp target/release/casefile "$OUT/casefile-checks"
# The base build shares the target directory (dependencies are not rebuilt); the current
# binary is copied first, and rebuilt after so target/release stays the current one.
WT=$(mktemp -d)
trap 'git worktree remove --force "$WT" 2>/dev/null || rm -rf "$WT"' EXIT
git worktree add --quiet --detach "$WT" "$BASE"
(cd "$WT" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --quiet --bin casefile)
cp target/release/casefile "$OUT/casefile-base"
cargo build --release --quiet --bin casefile
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); 4 connections, 500 spans/request, ${SECS}s a run, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  BIN="$OUT/casefile-base" scripts/bench-one.sh "base-$round" "$OUT/casefile-core.yaml" "$SECS"
  BIN="$OUT/casefile-checks" scripts/bench-one.sh "checks-$round" "$OUT/casefile-core.yaml" "$SECS"
done
