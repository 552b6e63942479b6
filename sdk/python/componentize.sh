#!/usr/bin/env bash
# Builds a Python sink of this repository into a WebAssembly component:
#
#   bash sdk/python/componentize.sh APP_DIR OUT.wasm [MANIFEST.json]
#
# APP_DIR holds the sink's `app.py` (a class `Sink` on sinkhost_sdk.SinkBase).
# componentize-py comes from sdk/python/setup-venv.sh (installed once into
# target/python-venv); it compiles world `plugin` of wit/sink.wit with
# APP_DIR and sdk/python on the module path. With MANIFEST.json, `sinkhost
# plugin manifest embed` embeds it (target/release/sinkhost, built first when
# missing). OUT.wasm is written through a temporary name. Works from any
# directory; relative paths are taken from the current directory.
set -euo pipefail
die() { echo "sdk/python/componentize.sh: error: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: bash sdk/python/componentize.sh APP_DIR OUT.wasm [MANIFEST.json]"
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
app_dir="$(absolute "$1")"
out="$(absolute "$2")"
manifest="${3:+$(absolute "$3")}"
[ -f "$app_dir/app.py" ] || die "$1/app.py does not exist"
[ -z "$manifest" ] || [ -f "$manifest" ] || die "$3 does not exist"

SDK="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$SDK/../.." && pwd -P)"
componentize_py="$(bash "$SDK/setup-venv.sh")" || die "componentize-py is not available (see above)"
mkdir -p "$(dirname "$out")"
raw="$out.raw.tmp"
echo "== componentize-py $1/app.py"
"$componentize_py" -q -d "$ROOT/wit" -w plugin componentize app \
    -p "$app_dir" -p "$SDK" -o "$raw" ||
    die "componentize-py failed on $1/app.py (see above)"
if [ -n "$manifest" ]; then
    host="$ROOT/target/release/sinkhost"
    if [ ! -x "$host" ]; then
        echo "== $host is missing: cargo build --release -p sinkhost (it embeds the manifest)"
        cargo build --release -p sinkhost --manifest-path "$ROOT/Cargo.toml" || die "building the host failed"
    fi
    "$host" plugin manifest embed --manifest "$manifest" --out "$out.tmp" "$raw" >/dev/null ||
        die "embedding $3 failed (see above)"
    rm -f "$raw"
else
    mv -f "$raw" "$out.tmp"
fi
mv -f "$out.tmp" "$out"
printf '%10d bytes  %s\n' "$(wc -c <"$out")" "$out"
