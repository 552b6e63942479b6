"""The per-language benchmark sink, Python edition.

Behaves exactly like tests/plugins/bench-rust (see its crate documentation)
and tests/plugins/bench-js, so `cargo bench -p sinkhost-e2e --bench
languages` compares the languages, not the sinks:

- ``behaviour`` "discard": every message reported stored, nothing touched;
- ``behaviour`` "files": one JSON record per message,
  ``<directory>/<stream>-<stream_sequence>.json``, written to a temporary
  name and renamed over the final one (``fsync``, default false, syncs each
  record first).
"""

import json
import os

import sinkhost_sdk as sdk


def headers_object(envelope):
    """Headers as a dict: a name seen once maps to its value, a repeated one to a list."""
    out = {}
    for name, value in envelope.headers:
        if name not in out:
            out[name] = value
        elif isinstance(out[name], list):
            out[name].append(value)
        else:
            out[name] = [out[name], value]
    return out


def encode_payload(envelope):
    """(encoding, value): JSON when it parses, else UTF-8 text, else base64."""
    try:
        text = bytes(envelope.payload).decode("utf-8")
    except UnicodeDecodeError:
        return "base64", sdk.payload_base64(envelope)
    try:
        return "json", json.loads(text)
    except ValueError:
        return "text", text


def record(envelope):
    """The JSON record of one message."""
    encoding, payload = encode_payload(envelope)
    return {
        "id": sdk.idempotency_key(envelope),
        "stream": envelope.stream,
        "stream_sequence": envelope.stream_sequence,
        "subject": envelope.subject,
        "message_id": envelope.message_id,
        "timestamp_ns": str(envelope.timestamp_ns),
        "headers": headers_object(envelope),
        "payload_encoding": encoding,
        "payload": payload,
    }


class Sink(sdk.SinkBase):
    def configure(self, config):
        self.behaviour = config.choice("behaviour", ("discard", "files"))
        self.directory = config.string("directory", "")
        self.fsync = config.boolean("fsync", False)
        config.finish()
        if self.behaviour == "files" and not self.directory:
            raise sdk.ConfigError('sink.directory: required when sink.behaviour is "files"')

    def write(self, batch, result):
        if self.behaviour == "discard":
            return
        super().write(batch, result)

    def write_message(self, envelope):
        key = sdk.idempotency_key(envelope)
        data = (json.dumps(record(envelope), separators=(",", ":"), ensure_ascii=False) + "\n").encode("utf-8")
        temporary = os.path.join(self.directory, "." + key + ".tmp")
        with open(temporary, "wb") as file:
            file.write(data)
            if self.fsync:
                file.flush()
                os.fdatasync(file.fileno())
        os.replace(temporary, os.path.join(self.directory, key + ".json"))
