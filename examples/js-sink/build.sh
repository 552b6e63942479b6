#!/usr/bin/env bash
# Builds the JavaScript example sink into target/plugins/js-sink.wasm with its
# manifest embedded:
#   1. `npm install` installs componentize-js (exact version in package.json) into
#      examples/js-sink/node_modules (skipped when it is already there);
#   2. the sink, the SDK helpers (sdk/js) and the WIT (wit/sink.wit, the
#      js-plugin world, the WASI packages shipped with jco) are staged in
#      target/js-build/js-sink/;
#   3. componentize-js compiles it to a component, without the `http` and
#      `fetch-event` features: the component does not import wasi:http and so
#      needs no `http` grant (only `files`);
#   4. `sinkhost plugin manifest embed` embeds manifest.json
#      (target/release/sinkhost, built first when it is missing).
# Needs node >= 18 and npm (tests/setup.sh installs them). Works from any
# directory.
set -euo pipefail

die() {
    echo "examples/js-sink/build.sh: error: $*" >&2
    exit 1
}

HERE="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
ROOT="$(cd -- "$HERE/../.." && pwd -P)"
cd "$ROOT"

command -v node >/dev/null 2>&1 || die "node not found (run tests/setup.sh, or apt-get install nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found (run tests/setup.sh, or apt-get install npm)"

modules="$HERE/node_modules"
if [ ! -x "$modules/.bin/componentize-js" ] || [ "$HERE/package.json" -nt "$modules/.package-lock.json" ]; then
    echo "== npm install (examples/js-sink: componentize-js)"
    # componentize-js is pinned exactly in package.json. No lock file: npm 11
    # installs an incomplete tree from a lock (it drops
    # @bytecodealliance/preview2-shim), so the tree is resolved afresh.
    (cd "$HERE" && npm install --no-package-lock --no-audit --no-fund --loglevel=error) ||
        die "npm could not install componentize-js in examples/js-sink"
fi
wasi_wit="$modules/@bytecodealliance/jco/lib/wit/builtin/0.2.12"
[ -d "$wasi_wit/wasi-filesystem" ] || die "the WASI 0.2.12 WIT packages are missing under $wasi_wit (jco changed?)"

build="$ROOT/target/js-build/js-sink"
rm -rf "$build"
mkdir -p "$build/wit/deps" "$ROOT/target/plugins"
cp "$HERE/sink.js" "$ROOT/sdk/js/sinkhost.js" "$ROOT/sdk/js/sinkhost-files.js" "$build/"
cp "$ROOT/wit/sink.wit" "$HERE/wit/js-sink.wit" "$build/wit/"
for package in io clocks filesystem; do
    mkdir -p "$build/wit/deps/$package"
    cp "$wasi_wit/wasi-$package/package.wit" "$build/wit/deps/$package/"
done

echo "== componentize-js examples/js-sink/sink.js"
"$modules/.bin/componentize-js" "$build/sink.js" --wit "$build/wit" --world-name js-plugin \
    --disable http fetch-event -o "$build/js-sink.wasm" ||
    die "componentize-js failed"

host="$ROOT/target/release/sinkhost"
if [ ! -x "$host" ]; then
    echo "== building target/release/sinkhost (to embed the manifest)"
    cargo build --release -p sinkhost
fi
"$host" plugin manifest embed --manifest "$HERE/manifest.json" "$build/js-sink.wasm" \
    --out "$ROOT/target/plugins/js-sink.wasm" >/dev/null ||
    die "embedding manifest.json failed"
echo "built target/plugins/js-sink.wasm ($(wc -c <"$ROOT/target/plugins/js-sink.wasm") bytes)"
