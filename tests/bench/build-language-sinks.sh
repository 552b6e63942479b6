#!/usr/bin/env bash
# Builds the per-language benchmark sinks (tests/plugins/bench-*, identical
# behaviour in Rust, Python and JavaScript) for `cargo bench -p sinkhost-e2e
# --bench languages`:
#
#   target/test-plugins/bench-rust.wasm     (plugins/build.sh, sinkhost-sdk)
#   target/test-plugins/bench-python.wasm   (sdk/python/componentize.sh)
#   target/test-plugins/bench-js.wasm       (sdk/js/componentize.sh)
#
# Works from any directory.
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
bash plugins/build.sh
bash sdk/python/componentize.sh tests/plugins/bench-python target/test-plugins/bench-python.wasm
bash sdk/js/componentize.sh tests/plugins/bench-js/sink.js target/test-plugins/bench-js.wasm
