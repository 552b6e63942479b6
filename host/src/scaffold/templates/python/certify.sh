#!/usr/bin/env bash
# Certifies {{name}}.wasm with `sinkhost certify` (docs: certification):
# a private nats-server, 1000+ messages, redelivery, an unavailable
# destination, payload variants. The sink writes into ./certify-data/out
# (granted as /data), emptied first. Build first: bash build.sh
set -euo pipefail
cd "$(dirname "$0")"
SINKHOST="${SINKHOST:-sinkhost}"
[ -f "{{name}}.wasm" ] || { echo "certify.sh: {{name}}.wasm is missing: run bash build.sh first" >&2; exit 1; }
rm -rf certify-data
mkdir -p certify-data/out
exec "$SINKHOST" certify --config certify.json "$@" "{{name}}.wasm"
