#!/usr/bin/env bash
# Builds {{name}}.wasm: the component, with manifest.json embedded.
# Needs: the wasm32-wasip2 Rust target (`rustup target add wasm32-wasip2`)
# and `sinkhost` on PATH (or SINKHOST=/path/to/sinkhost).
set -euo pipefail
cd "$(dirname "$0")"
sinkhost="${SINKHOST:-sinkhost}"
cargo build --release --target wasm32-wasip2
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/wasm32-wasip2/release/{{name_snake}}.wasm" ./{{name}}.wasm
"$sinkhost" plugin manifest embed --manifest manifest.json ./{{name}}.wasm
echo "built $(pwd)/{{name}}.wasm ($(wc -c < ./{{name}}.wasm) bytes)"
