#!/usr/bin/env bash
# The end-to-end demo: installs what is missing, builds sinkhost and the file
# plugin, starts a local JetStream on 127.0.0.1:14222, publishes sample
# events, runs `sinkhost run --plugin target/plugins/file.wasm
# examples/file/config.json`, and shows the records the sandboxed file sink
# wrote under .local/out/.
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT="${DEMO_COUNT:-20}"
STATE=.local/demo
OUT=.local/out

bash tests/setup.sh
echo "== building sinkhost, the sample publisher and the plugins (first build takes a few minutes)"
cargo build --release -p sinkhost -p sinkhost-example-publisher
bash plugins/build.sh

echo "== starting nats-server with JetStream on 127.0.0.1:14222"
rm -rf "$STATE" "$OUT"
mkdir -p "$STATE" "$OUT"
nats-server -js -a 127.0.0.1 -p 14222 -m 18222 -sd "$STATE/js" </dev/null >"$STATE/nats-server.log" 2>&1 &
NATS_PID=$!
HOST_PID=""
cleanup() {
    [ -n "$HOST_PID" ] && kill "$HOST_PID" 2>/dev/null || true
    kill "$NATS_PID" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    if curl -fs "http://127.0.0.1:18222/healthz?js-enabled-only=true" >/dev/null 2>&1; then break; fi
    sleep 0.1
done

echo "== publishing $COUNT sample events to stream DEMO (subjects demo.>)"
./target/release/publish-samples --count "$COUNT" --extra-stream DEMO_DLQ=demo-dlq.events

echo "== sinkhost run --plugin target/plugins/file.wasm examples/file/config.json"
./target/release/sinkhost run --plugin target/plugins/file.wasm examples/file/config.json \
    </dev/null >"$STATE/sinkhost.log" 2>&1 &
HOST_PID=$!
for _ in $(seq 1 300); do
    written=$(find "$OUT" -name '*.json' -type f | wc -l)
    [ "$written" -ge "$COUNT" ] && break
    sleep 0.1
done
kill -TERM "$HOST_PID"
wait "$HOST_PID" && status=0 || status=$?
HOST_PID=""

echo "== sinkhost log"
cat "$STATE/sinkhost.log"
echo "== sinkhost exited with status $status after SIGTERM"
echo "== records written by the sandboxed file sink ($OUT):"
find "$OUT" -name '*.json' -type f | sort | head -n 50
first=$(find "$OUT" -name '*.json' -type f | sort | head -n 1)
echo "== $first"
if command -v python3 >/dev/null 2>&1; then python3 -m json.tool "$first"; else cat "$first"; echo; fi
written=$(find "$OUT" -name '*.json' -type f | wc -l)
if [ "$written" -lt "$COUNT" ] || [ "$status" -ne 0 ]; then
    echo "demo FAILED: $written of $COUNT records, exit status $status" >&2
    exit 1
fi
echo "demo OK: $written records from $COUNT events"
