#!/usr/bin/env bash
# Builds the Python example sink into a WebAssembly component with its
# manifest.json embedded (componentize-py is installed once into
# target/python-venv; see sdk/python/componentize.sh):
#
#   bash examples/python-sink/build.sh   ->  target/plugins-python/python-sink.wasm
#
# Works from any directory.
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
bash sdk/python/componentize.sh examples/python-sink target/plugins-python/python-sink.wasm \
    examples/python-sink/manifest.json
