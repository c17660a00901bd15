"""Structured logs: one JSON object per line, carrying the active span's ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from agentstream.core.config import load_settings
from agentstream.core.logs import JsonFormatter, TextFormatter, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_lines_carry_the_span_ids_and_extras(stream: io.StringIO) -> None:
    configure_logging(load_settings(telemetry={"log_format": "json"}).telemetry, stream=stream)
    tracer = TracerProvider().get_tracer("test")
    log = logging.getLogger("agentstream.test")
    log.info("outside %s", "any span")
    with tracer.start_as_current_span("work") as span:
        log.warning("inside: %d rows", 3, extra={"table": "tool_calls"})
    outside, inside = _lines(stream)

    assert outside["message"] == "outside any span"
    assert outside["level"] == "info"
    assert "trace_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"
    assert inside["message"] == "inside: 3 rows"
    assert inside["logger"] == "agentstream.test"
    assert inside["table"] == "tool_calls"
    assert str(inside["time"]).endswith("Z")


def test_an_exception_is_one_field_of_one_line(stream: io.StringIO) -> None:
    configure_logging(load_settings(telemetry={"log_format": "json"}).telemetry, stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("agentstream.test").exception("failed")
    [line] = _lines(stream)
    assert line["level"] == "error"
    assert "ValueError: boom" in str(line["exception"])
    assert stream.getvalue().count("\n") == 1


def test_configuring_again_replaces_the_handler_and_honours_the_level(
    stream: io.StringIO,
) -> None:
    settings = load_settings(telemetry={"log_format": "json", "log_level": "warning"}).telemetry
    configure_logging(settings, stream=io.StringIO())
    handler = configure_logging(settings, stream=stream)
    ours = [h for h in logging.getLogger().handlers if type(h) is type(handler)]
    assert ours == [handler]
    log = logging.getLogger("agentstream.test")
    log.info("dropped")
    log.warning("kept")
    assert [line["message"] for line in _lines(stream)] == ["kept"]
    configure_logging(settings, level="debug", stream=stream)
    log.debug("now kept")
    assert _lines(stream)[-1]["message"] == "now kept"


def test_text_lines_name_the_trace_inside_a_span() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert TextFormatter().format(record).endswith("x: hello")
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        line = TextFormatter().format(record)
    assert line.endswith(f"trace={span.get_span_context().trace_id:032x}")
    assert json.loads(JsonFormatter().format(record))["message"] == "hello"
