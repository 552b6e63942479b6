"""A JSON record file sink written in Python.

Every message becomes one JSON file, ``<directory>/<stream>-<sequence>.json``,
written to a temporary name and renamed over the final one, so a redelivered
message replaces its own record instead of adding a second one.

Options (the ``sink`` section of the operator's config):

- ``directory`` (required): guest path of a granted, writable directory.
- ``pretty`` (default false): indent the JSON.
- ``include_headers`` (default true): store the NATS headers.
- ``payload_encoding`` (default "auto"): "auto" stores JSON payloads as JSON,
  other UTF-8 as text and anything else as base64; "text" stores UTF-8 text
  and refuses other payloads as permanent; "base64" always stores base64.
- ``fsync`` (default true): fsync every record before reporting it stored.
"""

import json
import os

import sinkhost_sdk as sdk

ENCODINGS = ("auto", "text", "base64")


class Sink(sdk.SinkBase):
    def configure(self, config):
        directory = config.string("directory")
        if not directory.startswith("/"):
            raise sdk.ConfigError(
                "sink.directory must be an absolute guest path (such as /out), got a relative one"
            )
        self.directory = directory.rstrip("/") or "/"
        self.pretty = config.boolean("pretty", False)
        self.include_headers = config.boolean("include_headers", True)
        self.payload_encoding = config.choice("payload_encoding", ENCODINGS, "auto")
        self.fsync = config.boolean("fsync", True)
        config.finish()
        if not os.path.isdir(self.directory):
            raise sdk.ConfigError(
                "sink.directory %s is not a directory the plugin can reach "
                "(grant it in plugin.grants.files)" % self.directory
            )
        sdk.info(
            "python-sink writes records to %s (payload_encoding %s)"
            % (self.directory, self.payload_encoding)
        )

    def write_message(self, envelope):
        key = sdk.idempotency_key(envelope)
        data = self.encode(self.record(envelope))
        final = os.path.join(self.directory, key + ".json")
        temporary = os.path.join(self.directory, "." + key + ".tmp")
        with open(temporary, "wb") as file:
            file.write(data)
            if self.fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, final)

    def record(self, envelope):
        record = {
            "stream": envelope.stream,
            "stream_sequence": envelope.stream_sequence,
            "subject": envelope.subject,
            "message_id": envelope.message_id,
            "timestamp_ns": envelope.timestamp_ns,
        }
        if self.include_headers:
            record["headers"] = [[name, value] for name, value in envelope.headers]
        encoding, payload = self.payload(envelope)
        record["payload_encoding"] = encoding
        record["payload"] = payload
        return record

    def payload(self, envelope):
        if self.payload_encoding == "base64":
            return "base64", sdk.payload_base64(envelope)
        if self.payload_encoding == "text":
            return "text", sdk.payload_text(envelope)
        try:
            text = sdk.payload_text(envelope)
        except sdk.PermanentError:
            return "base64", sdk.payload_base64(envelope)
        if not text:
            return "text", text
        try:
            return "json", json.loads(text)
        except ValueError:
            return "text", text

    def encode(self, record):
        if self.pretty:
            text = json.dumps(record, indent=2, ensure_ascii=False)
        else:
            text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        return (text + "\n").encode("utf-8")
