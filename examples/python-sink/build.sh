#!/usr/bin/env bash
# Builds the Python example sink into a WebAssembly component with
# componentize-py (installed once into target/python-venv by
# sdk/python/setup-venv.sh) and embeds its manifest.json with the release
# host binary (target/release/sinkhost, built first when missing):
#
#   bash examples/python-sink/build.sh   ->  target/plugins-python/python-sink.wasm
#
# Works from any directory.
set -euo pipefail
die() { echo "examples/python-sink/build.sh: error: $*" >&2; exit 1; }
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
componentize_py="$(bash sdk/python/setup-venv.sh)" || die "componentize-py is not available (see above)"
host="$ROOT/target/release/sinkhost"
if [ ! -x "$host" ]; then
    echo "== $host is missing: cargo build --release -p sinkhost (it embeds the manifest)"
    cargo build --release -p sinkhost || die "building the host failed"
fi
out_dir="$ROOT/target/plugins-python"
mkdir -p "$out_dir"
raw="$out_dir/python-sink.raw.wasm"
echo "== componentize-py: examples/python-sink/app.py -> $raw"
"$componentize_py" -q -d wit -w plugin componentize app \
    -p examples/python-sink -p sdk/python -o "$raw" ||
    die "componentize-py failed (see above)"
"$host" plugin manifest embed --manifest examples/python-sink/manifest.json \
    --out "$out_dir/python-sink.wasm.tmp" "$raw" >/dev/null ||
    die "embedding examples/python-sink/manifest.json failed (see above)"
mv -f "$out_dir/python-sink.wasm.tmp" "$out_dir/python-sink.wasm"
rm -f "$raw"
printf '%10d bytes  %s\n' "$(wc -c <"$out_dir/python-sink.wasm")" "target/plugins-python/python-sink.wasm"
