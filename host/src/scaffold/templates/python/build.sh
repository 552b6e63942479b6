#!/usr/bin/env bash
# Builds {{name}}.wasm: componentize-py turns src/app.py into a WebAssembly
# component for the world sinkhost:sink/plugin (wit/sink.wit), then
# `sinkhost plugin manifest embed` checks and embeds manifest.json.
#
# componentize-py 0.25.1 is installed once into .venv (needs python3 with
# venv; Debian: apt-get install python3-venv). Set COMPONENTIZE_PY to use an
# existing componentize-py, SINKHOST to use a sinkhost binary not on PATH.
set -euo pipefail
die() { echo "build.sh: error: $*" >&2; exit 1; }
cd "$(dirname "$0")"

SINKHOST="${SINKHOST:-sinkhost}"
command -v "$SINKHOST" >/dev/null 2>&1 || die "sinkhost not found (put it on PATH or set SINKHOST)"

if [ -z "${COMPONENTIZE_PY:-}" ]; then
    COMPONENTIZE_PY=.venv/bin/componentize-py
    if [ ! -x "$COMPONENTIZE_PY" ]; then
        command -v python3 >/dev/null 2>&1 || die "python3 not found"
        echo "== installing componentize-py 0.25.1 into .venv"
        python3 -m venv .venv || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
        .venv/bin/pip install --quiet --disable-pip-version-check "componentize-py==0.25.1" ||
            die "could not install componentize-py from PyPI"
    fi
fi

echo "== componentize-py: src/app.py -> {{name}}.wasm"
"$COMPONENTIZE_PY" -q -d wit -w plugin componentize app -p src -o "{{name}}.raw.wasm" ||
    die "componentize-py failed (see above)"
"$SINKHOST" plugin manifest embed --manifest manifest.json --out "{{name}}.wasm" "{{name}}.raw.wasm" >/dev/null ||
    die "embedding manifest.json failed (see above)"
rm -f "{{name}}.raw.wasm"
echo "== built {{name}}.wasm ($(wc -c <"{{name}}.wasm") bytes)"
