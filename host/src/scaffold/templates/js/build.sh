#!/usr/bin/env bash
# Builds {{name}}.wasm: installs componentize-js locally (npm), compiles
# sink.js into a WebAssembly component for the js-plugin world, without the
# `http` and `fetch-event` features (so it does not import wasi:http and needs
# only the `files` grant), and embeds manifest.json with
# `sinkhost plugin manifest embed` (set SINKHOST to the binary when it is not
# on PATH).
set -euo pipefail
cd "$(dirname "$0")"

SINKHOST="${SINKHOST:-sinkhost}"
command -v npm >/dev/null 2>&1 || { echo "error: npm not found (apt-get install nodejs npm)" >&2; exit 1; }
if [ ! -x node_modules/.bin/componentize-js ]; then
    echo "== npm install (componentize-js)"
    npm install --no-audit --no-fund --loglevel=error
fi
wasi_wit=node_modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12
build=build
rm -rf "$build"
mkdir -p "$build/wit/deps"
cp sink.js sinkhost.js sinkhost-files.js "$build/"
cp wit/*.wit "$build/wit/"
for package in io clocks filesystem; do
    mkdir -p "$build/wit/deps/$package"
    cp "$wasi_wit/wasi-$package/package.wit" "$build/wit/deps/$package/"
done
echo "== componentize-js sink.js"
node_modules/.bin/componentize-js "$build/sink.js" --wit "$build/wit" --world-name js-plugin \
    --disable http fetch-event -o "$build/{{name}}.wasm"
"$SINKHOST" plugin manifest embed --manifest manifest.json "$build/{{name}}.wasm" --out {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm) bytes)"
