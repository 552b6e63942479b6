// sinkhost.js: helpers for sinkhost sinks written in JavaScript and built
// with componentize-js (world `sinkhost:sink/plugin@0.1.0`).
//
// Copy this file next to your sink's source and import it with a relative
// path (componentize-js bundles relative imports found beside the source):
//
//   import { defineSink, parseConfig, log } from './sinkhost.js';
//   export const sink = defineSink({ init(config) { ... }, writeBatch(batch) { ... } });
//
// What it gives:
// - `defineSink`: the `sink` export, with every exception caught: `init`
//   errors become `err(message)`, `writeBatch` errors become a sink error,
//   transient unless the code threw a `permanent(...)` error. An uncaught
//   exception would otherwise trap the instance.
// - `parseConfig`: the `sink` section checked against a small spec, with an
//   error naming the field (`sink.pretty must be a boolean`).
// - envelope helpers: `header`, `headerValues`, `headersObject`,
//   `payloadText`, `payloadJson`, `payloadBase64`, `idempotencyKey`,
//   `envelopeRecord`.
// - `log.trace/debug/info/warn/error`: the host's log (`sinkhost:sink/log`).
//   Never log payloads or secrets.

import { log as hostLog } from 'sinkhost:sink/log@0.1.0';

/** Logging into the host's log; the host adds the plugin's name and level filter. */
export const log = {
  trace: (message) => hostLog('trace', String(message)),
  debug: (message) => hostLog('debug', String(message)),
  info: (message) => hostLog('info', String(message)),
  warn: (message) => hostLog('warn', String(message)),
  error: (message) => hostLog('error', String(message)),
};

/**
 * An error a sink reports: `kind` is `transient` (retrying can help: the
 * destination is unavailable) or `permanent` (this message can never be
 * stored: it is dead-lettered). The message is logged and copied into
 * dead-letter records: never put payload bytes or secrets in it.
 */
export class SinkError extends Error {
  constructor(message, kind = 'transient') {
    super(message);
    this.name = 'SinkError';
    this.kind = kind === 'permanent' ? 'permanent' : 'transient';
  }
}

/** A permanent error: the message (or batch) is dead-lettered, not retried. */
export function permanent(message) {
  return new SinkError(message, 'permanent');
}

/** A transient error: the host retries later with backoff. */
export function transient(message) {
  return new SinkError(message, 'transient');
}

/** A configuration problem; its message names the field. */
export class ConfigError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConfigError';
  }
}

// ---------------------------------------------------------------- config

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' ? 'an object' : `a ${type}`;
}

function checkOption(name, spec, value) {
  const field = `sink.${name}`;
  switch (spec.type) {
    case 'string':
      if (typeof value !== 'string') throw new ConfigError(`${field} must be a string, not ${typeName(value)}`);
      if (spec.nonEmpty && value.trim() === '') throw new ConfigError(`${field} must not be empty`);
      break;
    case 'boolean':
      if (typeof value !== 'boolean') throw new ConfigError(`${field} must be a boolean (true or false), not ${typeName(value)}`);
      break;
    case 'integer':
      if (!Number.isInteger(value)) throw new ConfigError(`${field} must be an integer, not ${typeName(value)}`);
      if (spec.min !== undefined && value < spec.min) throw new ConfigError(`${field} must be at least ${spec.min}`);
      if (spec.max !== undefined && value > spec.max) throw new ConfigError(`${field} must be at most ${spec.max}`);
      break;
    case 'any':
      break;
    default:
      throw new ConfigError(`${field}: the sink's config spec has an unknown type ${JSON.stringify(spec.type)}`);
  }
  if (spec.oneOf && !spec.oneOf.includes(value)) {
    throw new ConfigError(`${field} must be one of ${spec.oneOf.map((v) => JSON.stringify(v)).join(', ')}`);
  }
  if (spec.check) {
    const problem = spec.check(value);
    if (problem) throw new ConfigError(`${field} ${problem}`);
  }
  return value;
}

/**
 * Parses the `sink` section (the JSON text `init` receives) against `spec`:
 * `{ option: { type: 'string'|'boolean'|'integer'|'any', required?, default?,
 * oneOf?, nonEmpty?, min?, max?, check?(value) -> problem|undefined } }`.
 * Unknown options are refused (a typo must not silently change behaviour).
 * Returns a plain object with every option (defaults filled in); throws a
 * ConfigError naming the field otherwise.
 */
export function parseConfig(text, spec) {
  let section;
  try {
    section = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`the sink section is not valid JSON: ${e.message}`);
  }
  if (section === null || typeof section !== 'object' || Array.isArray(section)) {
    throw new ConfigError(`the sink section must be a JSON object, not ${typeName(section)}`);
  }
  for (const key of Object.keys(section)) {
    if (!Object.prototype.hasOwnProperty.call(spec, key)) {
      const known = Object.keys(spec).join(', ');
      throw new ConfigError(`unknown field \`${key}\` in the sink section (known: ${known})`);
    }
  }
  const config = {};
  for (const [name, option] of Object.entries(spec)) {
    if (Object.prototype.hasOwnProperty.call(section, name)) {
      config[name] = checkOption(name, option, section[name]);
    } else if (option.required) {
      throw new ConfigError(`sink.${name} is required`);
    } else {
      config[name] = option.default;
    }
  }
  return config;
}

// -------------------------------------------------------------- envelope

/** `<stream>-<stream_sequence>`: unique per message, stable across redeliveries. */
export function idempotencyKey(envelope) {
  return `${envelope.stream}-${envelope.streamSequence}`;
}

/** Every value of header `name` (case-insensitive), in received order. */
export function headerValues(envelope, name) {
  const wanted = name.toLowerCase();
  return envelope.headers.filter(([key]) => key.toLowerCase() === wanted).map(([, value]) => value);
}

/** The first value of header `name` (case-insensitive), or undefined. */
export function header(envelope, name) {
  return headerValues(envelope, name)[0];
}

/** The headers as an object: a name seen once maps to its value, a repeated one to the list. */
export function headersObject(envelope) {
  const out = {};
  for (const [key, value] of envelope.headers) {
    if (!Object.prototype.hasOwnProperty.call(out, key)) out[key] = value;
    else if (Array.isArray(out[key])) out[key].push(value);
    else out[key] = [out[key], value];
  }
  return out;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The payload as UTF-8 text; throws a permanent SinkError when it is not UTF-8. */
export function payloadText(envelope) {
  try {
    return strictUtf8.decode(envelope.payload);
  } catch {
    throw permanent('the payload is not valid UTF-8 text');
  }
}

/** The payload parsed as JSON; throws a permanent SinkError when it is not JSON. */
export function payloadJson(envelope) {
  const text = payloadText(envelope);
  try {
    return JSON.parse(text);
  } catch {
    throw permanent('the payload is not valid JSON');
  }
}

/** Base64 (standard alphabet, padded) of any bytes. */
export function bytesToBase64(bytes) {
  let out = '';
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  }
  return btoa(out);
}

/** The payload as base64 (standard alphabet, padded). */
export function payloadBase64(envelope) {
  return bytesToBase64(envelope.payload);
}

/**
 * The payload in a JSON-friendly form: `{ encoding, value }` where encoding
 * is `json` (the parsed document), `text` (a string) or `base64`. `mode`
 * `auto` picks json, else text, else base64; `json` and `text` throw a
 * permanent SinkError when the payload does not fit.
 */
export function encodePayload(envelope, mode = 'auto') {
  switch (mode) {
    case 'json':
      return { encoding: 'json', value: payloadJson(envelope) };
    case 'text':
      return { encoding: 'text', value: payloadText(envelope) };
    case 'base64':
      return { encoding: 'base64', value: payloadBase64(envelope) };
    case 'auto': {
      let text;
      try {
        text = strictUtf8.decode(envelope.payload);
      } catch {
        return { encoding: 'base64', value: payloadBase64(envelope) };
      }
      try {
        return { encoding: 'json', value: JSON.parse(text) };
      } catch {
        return { encoding: 'text', value: text };
      }
    }
    default:
      throw permanent(`unknown payload encoding ${JSON.stringify(mode)}`);
  }
}

/** A u64/s64 from the host (a BigInt) as a JSON number when exact, else a string. */
export function jsonInteger(value) {
  const big = BigInt(value);
  return big <= BigInt(Number.MAX_SAFE_INTEGER) && big >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(big) : big.toString();
}

/** Nanoseconds since the Unix epoch (BigInt) as an RFC 3339 UTC time (millisecond precision). */
export function nsToIso(ns) {
  return new Date(Number(BigInt(ns) / 1000000n)).toISOString();
}

/**
 * A JSON-ready record of one message: identity, subject, headers (unless
 * `includeHeaders` is false), timestamps (ISO and exact ns as a string),
 * metadata, custody and the payload encoded by `payloadEncoding`
 * (see encodePayload). Throws a permanent SinkError when the payload does
 * not fit the requested encoding.
 */
export function envelopeRecord(envelope, { payloadEncoding = 'auto', includeHeaders = true } = {}) {
  const payload = encodePayload(envelope, payloadEncoding);
  const record = {
    id: idempotencyKey(envelope),
    stream: envelope.stream,
    stream_sequence: jsonInteger(envelope.streamSequence),
    consumer: envelope.consumer,
    subject: envelope.subject,
    message_id: envelope.messageId ?? null,
    delivery_count: jsonInteger(envelope.deliveryCount),
    timestamp: nsToIso(envelope.timestampNs),
    timestamp_ns: BigInt(envelope.timestampNs).toString(),
    received_at_ns: BigInt(envelope.receivedAtNs).toString(),
    metadata: {
      priority: envelope.metadata.priority ?? null,
      classification: envelope.metadata.classification ?? null,
      labels: envelope.metadata.labels,
      security_labels: envelope.metadata.securityLabels ?? null,
      mission_metadata: envelope.metadata.missionMetadata ?? null,
    },
  };
  if (includeHeaders) record.headers = headersObject(envelope);
  if (envelope.custody) {
    const c = envelope.custody;
    record.custody = {
      algorithm: c.algorithm,
      key_id: c.keyId ?? null,
      payload_hash: c.payloadHash ?? null,
      metadata_hash: c.metadataHash ?? null,
      record_hash: c.recordHash,
      previous_record_hash: c.previousRecordHash ?? null,
    };
  }
  record.payload_encoding = payload.encoding;
  record.payload = payload.value;
  return record;
}

// ------------------------------------------------------------- the export

function describe(error) {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error);
  } catch {
    return String(error);
  }
}

function toSinkError(error) {
  if (error instanceof SinkError) return { kind: error.kind, message: error.message };
  return { kind: 'transient', message: describe(error) };
}

// componentize-js turns a thrown object into the `err` of a `result`:
// a thrown value that carries `payload` gives `err(payload)`. A thrown plain
// Error without it would trap, so every error leaves through this.
function fail(payload) {
  const error = new Error(typeof payload === 'string' ? payload : payload.message);
  error.payload = payload;
  return error;
}

/**
 * Builds the `sink` export from the author's implementation:
 *
 *   export const sink = defineSink({
 *     init(config) {},            // config: the JSON text; throw to refuse it
 *     writeBatch(batch) {},       // store every envelope, or
 *     writeMessage(envelope, i) {} // store one (called per envelope)
 *   });
 *
 * `init` may throw anything: the host gets `err(message)` and refuses to
 * start. `writeBatch` may return nothing (all stored), or
 * `{ failures: [{ index, error: { kind, message } }] }`; anything it throws
 * becomes a batch error, transient unless it is a `permanent(...)` error.
 * With `writeMessage` instead, a permanent error fails that message only
 * (it is dead-lettered, the others are stored) and any other error fails
 * the whole batch as transient (the destination is likely unavailable; the
 * batch is retried, so writes must be idempotent).
 */
export function defineSink(implementation) {
  const { init, writeBatch, writeMessage } = implementation;
  if (typeof init !== 'function') throw new TypeError('defineSink: init(config) is required');
  if (typeof writeBatch !== 'function' && typeof writeMessage !== 'function') {
    throw new TypeError('defineSink: writeBatch(batch) or writeMessage(envelope, index) is required');
  }
  return {
    init(config) {
      try {
        init(config);
      } catch (error) {
        throw fail(describe(error));
      }
    },
    writeBatch(batch) {
      try {
        if (typeof writeBatch === 'function') {
          const report = writeBatch(batch);
          return { failures: report && Array.isArray(report.failures) ? report.failures : [] };
        }
        const failures = [];
        for (let index = 0; index < batch.length; index++) {
          try {
            writeMessage(batch[index], index);
          } catch (error) {
            if (error instanceof SinkError && error.kind === 'permanent') {
              failures.push({ index, error: { kind: 'permanent', message: error.message } });
            } else {
              throw error;
            }
          }
        }
        return { failures };
      } catch (error) {
        const sinkError = toSinkError(error);
        try {
          log.warn(`write-batch failed (${sinkError.kind}): ${sinkError.message}`);
        } catch {
          // logging must never turn an error into a trap
        }
        throw fail(sinkError);
      }
    },
  };
}
