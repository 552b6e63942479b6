#!/usr/bin/env bash
# Builds the JavaScript example sink into target/plugins/js-sink.wasm with its
# manifest.json embedded: componentize-js 0.23.0 (installed once into
# target/js-tools by sdk/js/setup-tools.sh), the SDK helpers of sdk/js, world
# `js-plugin` (sdk/js/wit/js-plugin.wit), built without `http` and
# `fetch-event`, so the component imports no wasi:http and needs only the
# `files` grant. See sdk/js/componentize.sh. Needs node >= 18 and npm
# (tests/setup.sh installs them). Works from any directory.
set -euo pipefail
ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
bash sdk/js/componentize.sh examples/js-sink/sink.js target/plugins/js-sink.wasm examples/js-sink/manifest.json
