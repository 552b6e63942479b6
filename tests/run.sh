#!/usr/bin/env bash
# The whole test suite: installs prerequisites, builds the host and every
# plugin, runs unit tests (offline) and end-to-end tests (real nats-server
# on 127.0.0.1). This is what `.ci/run` runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/setup.sh
echo "== build host (release)"
cargo build --release -p sinkhost
echo "== build plugins"
bash plugins/build.sh
bash examples/python-sink/build.sh
bash examples/js-sink/build.sh
echo "== unit tests: plugins (native)"
cargo test --release -p sinkhost-plugin-file -p sinkhost-plugin-http -p sinkhost-plugin-s3 -p sinkhost-sdk-http -p sinkhost-sdk-sql -p sinkhost-sdk
echo "== host and end-to-end tests"
# Two at a time: each end-to-end test runs its own nats-server and host.
cargo test --release -p sinkhost -p sinkhost-e2e -- --test-threads=2
