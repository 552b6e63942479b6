#!/usr/bin/env bash
# Creates (once) the virtual environment holding componentize-py, the tool
# that turns a Python sink into a WebAssembly component. Idempotent; prints
# the path of the `componentize-py` executable on standard output.
#
#   bash sdk/python/setup-venv.sh [VENV_DIR]     (default <repo>/target/python-venv)
#
# Needs python3 with the venv module (Debian: python3-venv, installed by
# tests/setup.sh) and access to PyPI.
set -euo pipefail
COMPONENTIZE_PY_VERSION=0.25.1
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${1:-$ROOT/target/python-venv}"
tool="$VENV/bin/componentize-py"
if [ -x "$tool" ] && "$tool" --version 2>/dev/null | grep -q " $COMPONENTIZE_PY_VERSION\$"; then
    echo "$tool"
    exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "error: python3 not found (Debian: apt-get install python3 python3-venv)" >&2; exit 1; }
python3 -c "import venv, ensurepip" >/dev/null 2>&1 ||
    { echo "error: python3's venv module is missing (Debian: apt-get install python3-venv)" >&2; exit 1; }
echo "setup-venv: installing componentize-py $COMPONENTIZE_PY_VERSION into $VENV" >&2
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2 ||
    { echo "error: could not install componentize-py $COMPONENTIZE_PY_VERSION from PyPI" >&2; exit 1; }
echo "$tool"
