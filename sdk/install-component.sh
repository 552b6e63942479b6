#!/usr/bin/env bash
# Puts a freshly built component in place, for the Python and JavaScript
# build scripts of this repository (sdk/python/componentize.sh,
# sdk/js/componentize.sh):
#
#   bash sdk/install-component.sh BUILT.wasm OUT.wasm [MANIFEST.json]
#
# With MANIFEST.json, `sinkhost plugin manifest embed` embeds it
# (target/release/sinkhost, built first when missing); without, the bytes are
# copied. OUT.wasm is written through a temporary name, so a running host
# never loads half a component; then its size is printed.
set -euo pipefail
die() { echo "sdk/install-component.sh: error: $*" >&2; exit 1; }
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: bash sdk/install-component.sh BUILT.wasm OUT.wasm [MANIFEST.json]"
built="$1"
out="$2"
manifest="${3:-}"
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
mkdir -p "$(dirname "$out")"
if [ -n "$manifest" ]; then
    host="$ROOT/target/release/sinkhost"
    if [ ! -x "$host" ]; then
        echo "== $host is missing: cargo build --release -p sinkhost (it embeds the manifest)"
        cargo build --release -p sinkhost --manifest-path "$ROOT/Cargo.toml" || die "building the host failed"
    fi
    "$host" plugin manifest embed --manifest "$manifest" --out "$out.tmp" "$built" >/dev/null ||
        die "embedding $manifest failed (see above)"
else
    cp -f "$built" "$out.tmp"
fi
mv -f "$out.tmp" "$out"
printf '%10d bytes  %s\n' "$(wc -c <"$out")" "$out"
