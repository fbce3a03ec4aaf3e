#!/usr/bin/env bash
# Fuzzes casefile with libFuzzer on the stable toolchain (no cargo-fuzz, no nightly): the
# fuzz/ crate is built with the sanitizer-coverage passes cargo-fuzz would add, then each
# target runs for a bounded time from its seeds (fuzz/seeds/<target>) and the corpus it
# grows (fuzz/corpus/<target>, not committed).
#
#   scripts/fuzz.sh [all|wire_protobuf|wire_json|config|build] [SECONDS]
#
# SECONDS is per target: default $FUZZ_SECONDS, else 20 (CI); give 300 or more by hand.
# Extra libFuzzer flags can be passed in $FUZZ_FLAGS (e.g. "-jobs=2 -workers=2"), extra
# cargo flags in $FUZZ_CARGO_FLAGS (e.g. --timings).
# Exits non-zero on a crash, a failed check, a hang (over 10 s on one input) or running
# out of memory (2 GiB), and leaves the input in fuzz/artifacts/<target>/; replay it with
#   fuzz/target/<host>/release/<target> fuzz/artifacts/<target>/crash-…
# then turn it into a #[test] beside the code it broke (see README, "Fuzzing").
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(wire_protobuf wire_json config)
what=${1:-all}
secs=${2:-${FUZZ_SECONDS:-20}}
case "$what" in
  all) targets=("${TARGETS[@]}") ;;
  build) targets=() ;;
  wire_protobuf | wire_json | config) targets=("$what") ;;
  *)
    echo "usage: $0 [all|build|wire_protobuf|wire_json|config] [SECONDS]" >&2
    exit 2
    ;;
esac

# libfuzzer-sys compiles libFuzzer, which is C++.
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz: installing a C++ compiler for libFuzzer"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      SUDO="sudo"
    else
      echo "fuzz: no C++ compiler and this is not root (no sudo): install g++" >&2
      exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends g++ >/dev/null
fi

# What `cargo fuzz build -s none` passes: coverage counters and compare tracing for
# libFuzzer, given by fuzz/rustc-sancov.sh only to the crates the targets exercise, and
# `cfg(fuzzing)` to all. Debug assertions and overflow checks are on in the fuzz crate's
# release profile. The explicit --target keeps the flags off build scripts and proc
# macros, which are not linked with libFuzzer.
host=$(rustc -vV | sed -n 's/^host: //p')
export FUZZ_SANCOV_FLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
export RUSTFLAGS="--cfg fuzzing"
export RUSTC_WRAPPER="$PWD/fuzz/rustc-sancov.sh"
export CARGO_TARGET_DIR="$PWD/fuzz/target"
# The fuzz crate builds with the versions in Cargo.lock: its own lock file (not committed)
# is a copy, to which cargo adds libFuzzer's crates, renewed whenever Cargo.lock changes.
mkdir -p fuzz/target
if ! cmp -s Cargo.lock fuzz/target/Cargo.lock.base; then
  cp Cargo.lock fuzz/Cargo.lock
  cp Cargo.lock fuzz/target/Cargo.lock.base
fi
cargo build ${FUZZ_CARGO_FLAGS:-} --quiet --release --manifest-path fuzz/Cargo.toml --target "$host" --bins

status=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  # Every run first replays the seeds and the inputs that once failed.
  corpora=("fuzz/corpus/$t" "fuzz/seeds/$t")
  [ -d "tests/fuzz-regressions/$t" ] && corpora+=("tests/fuzz-regressions/$t")
  dict=()
  [ -f "fuzz/dicts/$t.dict" ] && dict=("-dict=fuzz/dicts/$t.dict")
  echo "fuzz: $t for ${secs}s"
  log="fuzz/artifacts/$t/last-run.log"
  # shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
  if "fuzz/target/$host/release/$t" "${corpora[@]}" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/artifacts/$t/" "${dict[@]}" ${FUZZ_FLAGS:-} >"$log" 2>&1; then
    # "#<runs> DONE cov: <edges> ft: <features> corp: <inputs>/<size> ... exec/s: <n> ..."
    sed -n "s/^#\([0-9]*\)[[:space:]]*DONE */fuzz: $t: \1 runs, /p" "$log"
  else
    status=1
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/, the log in $log:" >&2
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED)' "$log" | tail -40 >&2
  fi
done
exit $status
