#!/usr/bin/env bash
# Creates (once) a virtual environment with the reference implementation,
# nats-sinks 0.4.3 with its crypto extra, for the round-trip tests.
# Prints the venv's python path.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/target/reference-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import nats_sinks, cryptography, nats" 2>/dev/null; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "nats-sinks[crypto]==0.4.3" >&2
fi
echo "$VENV/bin/python"
