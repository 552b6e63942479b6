// A JSON record file sink in JavaScript: every message becomes
// <directory>/<stream>-<stream_sequence>.json, replaced atomically when the
// message is delivered again, so a redelivery never duplicates a record.
//
// Options (the config's `sink` section), checked by init:
//   directory         required: guest path of the output directory, inside a
//                     granted directory (plugin.grants.files)
//   pretty            indent the JSON (default false)
//   include_headers   store the NATS headers (default true)
//   payload_encoding  auto | json | text | base64 (default auto: JSON when the
//                     payload is JSON, else text when it is UTF-8, else base64;
//                     `json`/`text` dead-letter payloads that are not)
//   fsync             flush each record to disk before reporting it stored
//                     (default true)
//   create_directory  create the directory at init when missing (default true)
//
// sinkhost.js and sinkhost-files.js are copied here from sdk/js by build.sh.

import { defineSink, parseConfig, envelopeRecord, idempotencyKey, log } from './sinkhost.js';
import { grantedDirectory, ensureDirectory, writeFileAtomic } from './sinkhost-files.js';

const OPTIONS = {
  directory: { type: 'string', required: true, nonEmpty: true },
  pretty: { type: 'boolean', default: false },
  include_headers: { type: 'boolean', default: true },
  payload_encoding: { type: 'string', default: 'auto', oneOf: ['auto', 'json', 'text', 'base64'] },
  fsync: { type: 'boolean', default: true },
  create_directory: { type: 'boolean', default: true },
};

const encoder = new TextEncoder();
let settings;
let output;

/** A file name made only of safe characters (stream names are already close). */
function fileName(envelope) {
  return `${idempotencyKey(envelope).replace(/[^A-Za-z0-9_-]/g, '_')}.json`;
}

export const sink = defineSink({
  init(config) {
    settings = parseConfig(config, OPTIONS);
    output = grantedDirectory(settings.directory);
    if (settings.create_directory) ensureDirectory(output);
    log.info(`js-sink writes records under ${output.path} (payload ${settings.payload_encoding})`);
  },

  writeMessage(envelope) {
    const record = envelopeRecord(envelope, {
      payloadEncoding: settings.payload_encoding,
      includeHeaders: settings.include_headers,
    });
    const text = JSON.stringify(record, null, settings.pretty ? 2 : undefined) + '\n';
    writeFileAtomic(output, fileName(envelope), encoder.encode(text), { fsync: settings.fsync });
  },
});
