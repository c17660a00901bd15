"""Log records as one JSON object per line, with the active trace and span ids.

``configure_logging(settings.telemetry)`` installs one handler on the root
logger: ``log_format = "json"`` writes objects such as::

    {"time": "2026-11-23T22:56:11.204Z", "level": "warning", "logger": "agentstream.sink",
     "message": "sink: insert failed ...", "trace_id": "4bf9...", "span_id": "00f0..."}

``trace_id`` / ``span_id`` are present when the record was logged inside a span
(e.g. a processor's CONSUMER span), so a log line leads to its trace. Fields
passed with ``extra=`` are kept; an exception is one ``exception`` field, never
extra lines. ``text`` is the classic one-line format, with ``trace=<id>``
appended inside a span.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from opentelemetry import trace

if TYPE_CHECKING:
    from agentstream.core.config import TelemetrySettings

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging"]

#: attributes every LogRecord has; anything else came from ``extra=``
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def _span_ids() -> tuple[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, trace ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        entry: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        ids = _span_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message``, with `` trace=<id>`` inside a span."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = _span_ids()
        return line if ids is None else f"{line} trace={ids[0]}"


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` owns (so a second call replaces it)."""


def configure_logging(
    settings: TelemetrySettings, *, level: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Log to ``stream`` (stderr) in ``settings.log_format``; returns the handler installed.

    ``level`` overrides ``settings.log_level`` (e.g. a CLI flag). Calling it again
    replaces the handler it installed before; other handlers are left alone.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel((level or settings.log_level).upper())
    return handler
