#!/usr/bin/env bash
# Builds a Python sink of this repository into a WebAssembly component:
#
#   bash sdk/python/componentize.sh APP_DIR OUT.wasm [MANIFEST.json]
#
# APP_DIR holds the sink's `app.py` (a class `Sink` on sinkhost_sdk.SinkBase).
# componentize-py comes from sdk/python/setup-venv.sh (installed once into
# target/python-venv); it compiles world `plugin` of wit/sink.wit with
# APP_DIR and sdk/python on the module path; sdk/install-component.sh then
# writes OUT.wasm (through a temporary name), embedding MANIFEST.json when
# given. Works from any
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
raw="$(mktemp --suffix=.wasm)"
trap 'rm -f "$raw"' EXIT
echo "== componentize-py $1/app.py"
"$componentize_py" -q -d "$ROOT/wit" -w plugin componentize app \
    -p "$app_dir" -p "$SDK" -o "$raw" ||
    die "componentize-py failed on $1/app.py (see above)"
bash "$ROOT/sdk/install-component.sh" "$raw" "$out" ${manifest:+"$manifest"}
