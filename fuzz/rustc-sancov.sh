#!/usr/bin/env bash
# RUSTC_WRAPPER for scripts/fuzz.sh: adds libFuzzer's coverage instrumentation
# ($FUZZ_SANCOV_FLAGS) only to the crates whose code the fuzz targets exercise: casefile,
# the fuzz crate, prost and the generated OTLP types (the differential check), and the
# YAML parsers. The ~200 others (tokio, hyper, axum, redb, ...) are never run by a target:
# leaving them out makes the build faster and keeps the fuzzer's feedback on casefile.
set -euo pipefail
rustc=$1
shift
case " $* " in
  *" --crate-name casefile "* | *" --crate-name casefile_fuzz "* | \
    *" --crate-name prost "* | *" --crate-name opentelemetry_proto "* | \
    *" --crate-name serde_yaml_ng "* | *" --crate-name unsafe_libyaml "* | \
    *" --crate-name saphyr_parser "*)
    # shellcheck disable=SC2086 # a list of flags
    exec "$rustc" "$@" $FUZZ_SANCOV_FLAGS
    ;;
esac
exec "$rustc" "$@"
