// The per-language benchmark sink, JavaScript edition. Behaves exactly like
// tests/plugins/bench-rust (see its crate documentation) and
// tests/plugins/bench-python, so `cargo bench -p sinkhost-e2e --bench
// languages` compares the languages, not the sinks:
//   behaviour "discard": every message reported stored, nothing touched;
//   behaviour "files":   one JSON record per message,
//                        <directory>/<stream>-<stream_sequence>.json, written
//                        to a temporary name and renamed over the final one
//                        (fsync, default false, syncs each record first).

import { defineSink, parseConfig, idempotencyKey, headersObject, encodePayload, ConfigError } from './sinkhost.js';
import { grantedDirectory, writeFileAtomic } from './sinkhost-files.js';

const OPTIONS = {
  behaviour: { type: 'string', required: true, oneOf: ['discard', 'files'] },
  directory: { type: 'string', default: '' },
  fsync: { type: 'boolean', default: false },
};

const encoder = new TextEncoder();
let settings;
let output;

/** The JSON record of one message. */
function record(envelope) {
  const payload = encodePayload(envelope, 'auto');
  return {
    id: idempotencyKey(envelope),
    stream: envelope.stream,
    stream_sequence: Number(envelope.streamSequence),
    subject: envelope.subject,
    message_id: envelope.messageId ?? null,
    timestamp_ns: BigInt(envelope.timestampNs).toString(),
    headers: headersObject(envelope),
    payload_encoding: payload.encoding,
    payload: payload.value,
  };
}

export const sink = defineSink({
  init(config) {
    settings = parseConfig(config, OPTIONS);
    if (settings.behaviour === 'files') {
      if (!settings.directory) throw new ConfigError('sink.directory: required when sink.behaviour is "files"');
      output = grantedDirectory(settings.directory);
    }
  },

  writeBatch(batch) {
    if (settings.behaviour === 'discard') return;
    for (const envelope of batch) {
      const text = JSON.stringify(record(envelope)) + '\n';
      writeFileAtomic(output, `${idempotencyKey(envelope)}.json`, encoder.encode(text), { fsync: settings.fsync });
    }
  },
});
