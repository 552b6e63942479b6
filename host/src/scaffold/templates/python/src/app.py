"""{{name}}: a sinkhost sink written in Python.

Every message becomes one JSON file, ``<directory>/<stream>-<sequence>.json``.
The file is written under a temporary name and renamed over the final one,
so a redelivered message replaces its own record instead of adding a second
one (the sink contract: store every message at most once).

Options (the ``sink`` section of the operator's config):

- ``directory`` (required): guest path of a granted, writable directory.
- ``pretty`` (default false): indent the JSON.

Start changing the sink in ``write_message``; ``sinkhost_sdk`` (beside this
file) turns every exception into a sink error: transient (retried) unless
it is ``sdk.PermanentError`` (dead-lettered).
"""

import json
import os

import sinkhost_sdk as sdk


class Sink(sdk.SinkBase):
    def configure(self, config):
        self.directory = config.string("directory")
        if not self.directory.startswith("/"):
            raise sdk.ConfigError("sink.directory must be an absolute guest path such as /out")
        self.pretty = config.boolean("pretty", False)
        config.finish()  # refuses unknown (misspelt) options
        if not os.path.isdir(self.directory):
            raise sdk.ConfigError(
                "sink.directory %s is not a directory the plugin can reach "
                "(grant it in plugin.grants.files)" % self.directory
            )
        sdk.info("{{name}} writes records to %s" % self.directory)

    def write_message(self, envelope):
        key = sdk.idempotency_key(envelope)
        record = {
            "stream": envelope.stream,
            "stream_sequence": envelope.stream_sequence,
            "subject": envelope.subject,
            "message_id": envelope.message_id,
            "headers": [[name, value] for name, value in envelope.headers],
        }
        try:
            record["payload"] = sdk.payload_json(envelope)
        except sdk.PermanentError:
            # Not JSON: keep the exact bytes.
            record["payload_base64"] = sdk.payload_base64(envelope)
        text = json.dumps(record, indent=2 if self.pretty else None)
        final = os.path.join(self.directory, key + ".json")
        temporary = os.path.join(self.directory, "." + key + ".tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text + "\n")
            file.flush()
            os.fsync(file.fileno())  # durable before it is reported stored
        os.replace(temporary, final)
