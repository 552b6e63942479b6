#!/usr/bin/env bash
# Builds a JavaScript sink of this repository into a WebAssembly component:
#
#   bash sdk/js/componentize.sh SINK.js OUT.wasm [MANIFEST.json]
#
#   1. componentize-js comes from sdk/js/setup-tools.sh (installed once);
#   2. SINK.js, the SDK helpers (sinkhost.js, sinkhost-files.js) and the WIT
#      (wit/sink.wit, sdk/js/wit/js-plugin.wit, and the WASI io, clocks and
#      filesystem packages shipped with jco) are staged in
#      target/js-build/<name of OUT>/;
#   3. componentize-js compiles world `js-plugin` without the `http` and
#      `fetch-event` features: the component imports no wasi:http and needs
#      no `http` grant (only `files`; docs/authoring.md says how to keep
#      `fetch`);
#   4. sdk/install-component.sh writes OUT.wasm (through a temporary name),
#      embedding MANIFEST.json when given. Works from any directory;
# relative paths are taken from the current directory.
set -euo pipefail
die() { echo "sdk/js/componentize.sh: error: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: bash sdk/js/componentize.sh SINK.js OUT.wasm [MANIFEST.json]"
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
entry="$(absolute "$1")"
out="$(absolute "$2")"
manifest="${3:+$(absolute "$3")}"
[ -f "$entry" ] || die "$1 does not exist"
[ -z "$manifest" ] || [ -f "$manifest" ] || die "$3 does not exist"

SDK="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SDK/../.." && pwd -P)"
componentize_js="$(bash "$SDK/setup-tools.sh")" || die "componentize-js is not available (see above)"
modules="$(cd "$(dirname "$componentize_js")/.." && pwd -P)"
wasi_wit="$modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12"
[ -d "$wasi_wit/wasi-filesystem" ] || die "the WASI 0.2.12 WIT packages are missing under $wasi_wit (jco changed?)"

name="$(basename "$out" .wasm)"
build="$ROOT/target/js-build/$name"
rm -rf "$build"
mkdir -p "$build/wit/deps" "$(dirname "$out")"
cp "$entry" "$build/sink.js"
cp "$SDK/sinkhost.js" "$SDK/sinkhost-files.js" "$build/"
cp "$ROOT/wit/sink.wit" "$SDK/wit/js-plugin.wit" "$build/wit/"
for package in io clocks filesystem; do
    mkdir -p "$build/wit/deps/$package"
    cp "$wasi_wit/wasi-$package/package.wit" "$build/wit/deps/$package/"
done

echo "== componentize-js $1"
"$componentize_js" "$build/sink.js" --wit "$build/wit" --world-name js-plugin \
    --disable http fetch-event -o "$build/$name.wasm" ||
    die "componentize-js failed on $1"

bash "$ROOT/sdk/install-component.sh" "$build/$name.wasm" "$out" ${manifest:+"$manifest"}
