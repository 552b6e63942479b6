#!/usr/bin/env bash
# Runs the sinkhost certification suite against {{name}}.wasm: the plugin
# gets ./certify-data as /data and writes under /data/out (certify.json).
# Prints PASS/FAIL per check; exits non-zero unless it passes.
set -euo pipefail
cd "$(dirname "$0")"
SINKHOST="${SINKHOST:-sinkhost}"
[ -f {{name}}.wasm ] || bash build.sh
rm -rf certify-data
mkdir -p certify-data/out
"$SINKHOST" certify --config certify.json {{name}}.wasm
