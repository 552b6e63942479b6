"""Helpers for writing sinkhost sink plugins in Python.

A sink is a WebAssembly component for the world ``sinkhost:sink/plugin``
built with componentize-py. Its app module defines a class named ``Sink``;
derive it from :class:`SinkBase` and implement :meth:`SinkBase.configure`
and :meth:`SinkBase.write_message` (or :meth:`SinkBase.write` for a whole
batch)::

    import sinkhost_sdk as sdk

    class Sink(sdk.SinkBase):
        def configure(self, config):
            self.directory = config.string("directory")
            config.finish()

        def write_message(self, envelope):
            ...  # raise sdk.PermanentError for data that can never be stored

:class:`SinkBase` catches every exception: an exception that escaped into
the host would trap and kill the instance. Exceptions become sink errors,
transient unless they are :class:`PermanentError` (or the author's class
marked with ``permanent = True``).

Error messages end up in the host's log and in dead-letter records: never
put payload bytes or secrets in them.
"""

import base64
import binascii
import json

from wit_world import exports as _exports
from wit_world.imports import log as _log
from wit_world.imports import types as _types
from componentize_py_types import Err

__all__ = [
    "ConfigError",
    "SinkFailure",
    "TransientError",
    "PermanentError",
    "Config",
    "SinkBase",
    "header",
    "header_values",
    "idempotency_key",
    "payload_text",
    "payload_json",
    "payload_base64",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
]


# ---------------------------------------------------------------- errors


class ConfigError(Exception):
    """The ``sink`` section is wrong; the message names the field."""


class SinkFailure(Exception):
    """A message or batch that was not stored.

    ``permanent`` says whether retrying can help: ``False`` (transient) makes
    the host retry later, ``True`` makes it dead-letter the message. A
    subclass may set ``permanent = True`` as a class attribute to mark a
    whole family of errors as permanent.
    """

    permanent = False

    def __init__(self, message, permanent=None):
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent


class TransientError(SinkFailure):
    """The destination is unavailable or overloaded: retry later."""

    permanent = False


class PermanentError(SinkFailure):
    """This message can never be stored (bad data): dead-letter it."""

    permanent = True


def _describe(exc):
    """A one-line description of an exception for a sink error."""
    if isinstance(exc, (SinkFailure, ConfigError)):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        # OSError's str() includes the file name, never data.
        return "%s: %s" % (type(exc).__name__, exc)
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def _is_permanent(exc):
    return bool(getattr(exc, "permanent", False)) and isinstance(exc, Exception)


def _sink_error(exc):
    kind = _types.ErrorKind.PERMANENT if _is_permanent(exc) else _types.ErrorKind.TRANSIENT
    return _types.SinkError(kind=kind, message=_describe(exc))


# ---------------------------------------------------------------- logging


def _write_log(level, message):
    try:
        _log.log(level, str(message))
    except BaseException:  # logging must never take the sink down
        pass


def trace(message):
    """Logs at trace level into the host's log (never log payloads or secrets)."""
    _write_log(_log.Level.TRACE, message)


def debug(message):
    """Logs at debug level into the host's log."""
    _write_log(_log.Level.DEBUG, message)


def info(message):
    """Logs at info level into the host's log."""
    _write_log(_log.Level.INFO, message)


def warn(message):
    """Logs at warn level into the host's log."""
    _write_log(_log.Level.WARN, message)


def error(message):
    """Logs at error level into the host's log."""
    _write_log(_log.Level.ERROR, message)


# ---------------------------------------------------------------- envelopes


def header_values(envelope, name):
    """All values of header ``name`` (case-insensitive), in received order."""
    wanted = name.lower()
    return [value for key, value in envelope.headers if key.lower() == wanted]


def header(envelope, name, default=None):
    """The first value of header ``name`` (case-insensitive), else ``default``."""
    values = header_values(envelope, name)
    return values[0] if values else default


def idempotency_key(envelope):
    """``<stream>-<stream_sequence>``: unique per message, stable on redelivery."""
    return "%s-%d" % (envelope.stream, envelope.stream_sequence)


def payload_text(envelope):
    """The payload decoded as UTF-8; :class:`PermanentError` if it is not."""
    try:
        return bytes(envelope.payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PermanentError(
            "payload of %s is not valid UTF-8 (invalid byte at offset %d)"
            % (idempotency_key(envelope), exc.start)
        ) from None


def payload_json(envelope):
    """The payload parsed as JSON; :class:`PermanentError` if it is not JSON."""
    text = payload_text(envelope)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PermanentError(
            "payload of %s is not JSON (line %d, column %d)"
            % (idempotency_key(envelope), getattr(exc, "lineno", 0), getattr(exc, "colno", 0))
        ) from None


def payload_base64(envelope):
    """The payload as standard base64 text (for binary data)."""
    return base64.b64encode(bytes(envelope.payload)).decode("ascii")


# ---------------------------------------------------------------- config

_REQUIRED = object()


class Config:
    """The ``sink`` section of the operator's config, with typed getters.

    Every getter raises :class:`ConfigError` naming the field. Call
    :meth:`finish` after reading every option: it refuses unknown fields (a
    misspelt option must not be silently ignored). ``type`` is always
    allowed (operators may label the section with the sink's name).
    """

    def __init__(self, values):
        self._values = values
        self._read = {"type"}

    @classmethod
    def parse(cls, text):
        """Parses the JSON text ``init`` receives; it must be an object."""
        try:
            values = json.loads(text)
        except ValueError as exc:
            raise ConfigError("the sink section is not valid JSON: %s" % exc) from None
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(
                "the sink section must be a JSON object, not %s" % _json_type(values)
            )
        return cls(values)

    def raw(self):
        """The whole section as a dict."""
        return dict(self._values)

    def has(self, name):
        """Whether field ``name`` is present."""
        return name in self._values

    def _get(self, name, default):
        self._read.add(name)
        if name in self._values:
            return self._values[name]
        if default is _REQUIRED:
            raise ConfigError("sink.%s is required" % name)
        return default

    def value(self, name, default=_REQUIRED):
        """Field ``name`` as any JSON value."""
        return self._get(name, default)

    def string(self, name, default=_REQUIRED, allow_empty=False):
        """Field ``name`` as a string."""
        value = self._get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise ConfigError("sink.%s must be a string, not %s" % (name, _json_type(value)))
        if not allow_empty and not value:
            raise ConfigError("sink.%s must not be empty" % name)
        return value

    def boolean(self, name, default=_REQUIRED):
        """Field ``name`` as ``true``/``false``."""
        value = self._get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, bool):
            raise ConfigError("sink.%s must be true or false, not %s" % (name, _json_type(value)))
        return value

    def integer(self, name, default=_REQUIRED, minimum=None, maximum=None):
        """Field ``name`` as an integer within [minimum, maximum]."""
        value = self._get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("sink.%s must be an integer, not %s" % (name, _json_type(value)))
        if minimum is not None and value < minimum:
            raise ConfigError("sink.%s must be at least %d" % (name, minimum))
        if maximum is not None and value > maximum:
            raise ConfigError("sink.%s must be at most %d" % (name, maximum))
        return value

    def choice(self, name, choices, default=_REQUIRED):
        """Field ``name`` as one of the strings ``choices``."""
        value = self._get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if value not in choices:
            raise ConfigError(
                "sink.%s must be one of %s" % (name, ", ".join('"%s"' % c for c in choices))
            )
        return value

    def finish(self):
        """Refuses fields no getter read."""
        unknown = sorted(name for name in self._values if name not in self._read)
        if unknown:
            raise ConfigError(
                "unknown field%s in the sink section: %s"
                % ("s" if len(unknown) > 1 else "", ", ".join("sink." + n for n in unknown))
            )


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ---------------------------------------------------------------- the sink


class BatchResult:
    """Per-message failures collected while writing one batch."""

    def __init__(self):
        self.failures = []

    def fail(self, index, exc):
        """Records message ``index`` as not stored, for the reason ``exc``."""
        self.failures.append(_types.MessageFailure(index=index, error=_sink_error(exc)))


# componentize-py may build a new ``Sink`` object per call: the configured
# one is kept here so ``write_batch`` always sees what ``init`` set up.
_configured = None


class SinkBase(_exports.Sink):
    """Base class of a sink; implements the WIT ``init`` and ``write-batch``.

    Override :meth:`configure`, then either :meth:`write_message` (called per
    message; an exception fails that message only) or :meth:`write` (the
    whole batch), and optionally :meth:`flush` (once per batch, after the
    writes: an exception there fails the whole batch as nothing may be
    assumed durable).
    """

    def configure(self, config):
        """Reads and validates options from ``config`` (a :class:`Config`);
        raise :class:`ConfigError` (or any exception) to refuse it."""
        config.finish()

    def write_message(self, envelope):
        """Stores one message durably (or raises)."""
        raise PermanentError("this sink does not implement write_message")

    def write(self, batch, result):
        """Stores a batch; default: :meth:`write_message` for each message,
        recording each exception as that message's failure in ``result``."""
        for index, envelope in enumerate(batch):
            try:
                self.write_message(envelope)
            except BaseException as exc:  # noqa: B902 - must never escape
                result.fail(index, exc)

    def flush(self):
        """Makes the batch's writes durable; called once per batch."""

    # ---- the WIT exports; do not override

    def init(self, config):
        global _configured
        try:
            self.configure(Config.parse(config))
        except ConfigError as exc:
            raise Err(str(exc))
        except BaseException as exc:
            raise Err("init failed: %s" % _describe(exc))
        _configured = self

    def write_batch(self, batch):
        target = _configured if _configured is not None else self
        result = BatchResult()
        try:
            target.write(batch, result)
            target.flush()
        except BaseException as exc:
            raise Err(_sink_error(exc))
        return _types.BatchReport(failures=result.failures)
