"""Query results as CSV, JSON or a terminal table."""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import json
import math
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agentstream.sinks.clickhouse import QueryResult

__all__ = ["OutputFormat", "format_result", "to_jsonable"]

OutputFormat = Literal["table", "csv", "json"]


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (times as ISO text, bytes as hex, NaN as null)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [to_jsonable(v) for v in value]
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6g")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    plain = to_jsonable(value)
    return plain if isinstance(plain, str) else json.dumps(plain)


def format_result(result: QueryResult, fmt: OutputFormat, *, title: str | None = None) -> str:
    """The text of ``result`` in ``fmt`` (``table`` is rendered with rich)."""
    if fmt == "json":
        rows = [
            {c: to_jsonable(v) for c, v in zip(result.columns, row, strict=True)}
            for row in result.rows
        ]
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        for row in result.rows:
            writer.writerow(["" if v is None else _cell(v) for v in row])
        return out.getvalue()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column, ch_type in zip(result.columns, result.types, strict=True):
        numeric = any(t in ch_type for t in ("Int", "Float", "Decimal"))
        table.add_column(column, justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(*(_cell(v) for v in row))
    width = shutil.get_terminal_size((160, 24)).columns
    console = Console(width=width, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        console.print(f"{len(result.rows)} row(s)")
    return capture.get()
