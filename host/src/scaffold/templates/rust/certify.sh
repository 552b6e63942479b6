#!/usr/bin/env bash
# Certifies {{name}}.wasm (build it first with ./build.sh): runs
# `sinkhost certify` against a scratch directory, certify-data/. Needs
# `sinkhost` and `nats-server` on PATH (or SINKHOST=/path/to/sinkhost).
set -euo pipefail
cd "$(dirname "$0")"
sinkhost="${SINKHOST:-sinkhost}"
rm -rf certify-data
mkdir -p certify-data/out
"$sinkhost" certify --config certify.json "$@" ./{{name}}.wasm
