#!/usr/bin/env bash
# Installs componentize-js (npm, pinned version below) for the JavaScript
# sinks built inside this repository (examples/js-sink, the bench sink), once,
# into target/js-tools (or the directory given as $1), and prints the path of
# its `componentize-js` command on stdout. Progress goes to stderr.
#
#   componentize_js="$(bash sdk/js/setup-tools.sh)"
#
# Needs node >= 18 and npm (Debian: apt-get install nodejs npm; tests/setup.sh
# installs them) and access to the npm registry. A scaffolded project
# (`sinkhost plugin new --lang js`) pins the same version in its own
# package.json instead.
set -euo pipefail
COMPONENTIZE_JS_VERSION=0.23.0
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
TOOLS="${1:-$ROOT/target/js-tools}"
tool="$TOOLS/node_modules/.bin/componentize-js"
installed="$TOOLS/node_modules/@bytecodealliance/componentize-js/package.json"
if [ -x "$tool" ] && grep -q "\"version\": \"$COMPONENTIZE_JS_VERSION\"" "$installed" 2>/dev/null; then
    echo "$tool"
    exit 0
fi
command -v node >/dev/null 2>&1 || { echo "error: node not found (Debian: apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null 2>&1 || { echo "error: npm not found (Debian: apt-get install npm)" >&2; exit 1; }
echo "setup-tools: installing componentize-js $COMPONENTIZE_JS_VERSION into $TOOLS" >&2
mkdir -p "$TOOLS"
# No lock file: npm 11 installed an incomplete tree from one (it dropped
# @bytecodealliance/preview2-shim), so the tree is resolved afresh around the
# exactly pinned componentize-js.
[ -f "$TOOLS/package.json" ] || echo '{"name":"sinkhost-js-tools","private":true}' >"$TOOLS/package.json"
npm install --prefix "$TOOLS" --no-package-lock --no-audit --no-fund --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" >&2 ||
    { echo "error: could not install componentize-js $COMPONENTIZE_JS_VERSION from npm" >&2; exit 1; }
[ -x "$tool" ] || { echo "error: npm finished but $tool is missing" >&2; exit 1; }
echo "$tool"
