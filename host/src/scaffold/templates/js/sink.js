// {{name}}: a sinkhost sink in JavaScript. Every message becomes one JSON
// record file, <directory>/<stream>-<stream_sequence>.json, replaced
// atomically when the message is delivered again (no duplicates).
//
// Options (the config's `sink` section), checked by init:
//   directory  required: guest path inside a granted directory (e.g. /data/out)
//   pretty     indent the JSON (default false)
//   fsync      flush each record to disk before reporting it stored (default true)
//
// Change writeMessage to store wherever you need. Throw `permanent(...)` for
// a message that can never be stored (it is dead-lettered); anything else
// thrown is transient (the batch is retried later).

import { defineSink, parseConfig, envelopeRecord, idempotencyKey, log } from './sinkhost.js';
import { grantedDirectory, ensureDirectory, writeFileAtomic } from './sinkhost-files.js';

const OPTIONS = {
  directory: { type: 'string', required: true, nonEmpty: true },
  pretty: { type: 'boolean', default: false },
  fsync: { type: 'boolean', default: true },
};

const encoder = new TextEncoder();
let settings;
let output;

export const sink = defineSink({
  init(config) {
    settings = parseConfig(config, OPTIONS);
    output = grantedDirectory(settings.directory);
    ensureDirectory(output);
    log.info(`{{name}} writes records under ${output.path}`);
  },

  writeMessage(envelope) {
    const record = envelopeRecord(envelope);
    const text = JSON.stringify(record, null, settings.pretty ? 2 : undefined) + '\n';
    const name = `${idempotencyKey(envelope).replace(/[^A-Za-z0-9_-]/g, '_')}.json`;
    writeFileAtomic(output, name, encoder.encode(text), { fsync: settings.fsync });
  },
});
