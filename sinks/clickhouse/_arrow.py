"""Rows → an Arrow table typed from the ClickHouse columns: the embedded engine's insert format.

Columnar inserts cost the engine a fraction of parsing text: the rows are
transposed once (``zip``), each column becomes one Arrow array (pyarrow converts
the Python values in C), and the engine reads the table as an Arrow IPC stream
(:func:`write_stream`), casting each column to its ClickHouse type.

The Arrow type of each column follows its ClickHouse type (:func:`arrow_type`);
a table with a type this module does not know is inserted as TabSeparated text
instead (:mod:`agentstream.sinks.clickhouse._tsv`). A value Arrow cannot hold in
its column (a negative ``UInt32``, a set, a lone surrogate) is a ``ValueError``
naming the column: the sink takes it for a refused row and isolates it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["arrow_schema", "arrow_table", "arrow_type", "write_stream"]

_WRAPPERS = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")
_DATETIME64 = re.compile(r"^DateTime64\(\s*\d+\s*(,.*)?\)$")
_DATETIME = re.compile(r"^DateTime(\(.*\))?$")


def _split_arguments(text: str) -> list[str]:
    """``"LowCardinality(String), UInt64"`` → ``["LowCardinality(String)", "UInt64"]``."""
    parts: list[str] = []
    depth = 0
    start = 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def arrow_type(ch_type: str) -> Any:
    """The Arrow type a value of ClickHouse type ``ch_type`` is sent as (``None``: unknown).

    ``String`` goes as Arrow ``binary`` (ClickHouse strings are bytes; ``str`` values are
    encoded as UTF-8), ``UUID`` as text, every ``DateTime`` as microseconds in UTC.
    """
    import pyarrow as pa

    text = ch_type.strip()
    wrapped = _WRAPPERS.match(text)
    if wrapped:
        return arrow_type(wrapped.group(2))
    simple = {
        "String": pa.binary(),
        "UUID": pa.string(),
        "Bool": pa.bool_(),
        "Float32": pa.float32(),
        "Float64": pa.float64(),
        "Int8": pa.int8(),
        "Int16": pa.int16(),
        "Int32": pa.int32(),
        "Int64": pa.int64(),
        "UInt8": pa.uint8(),
        "UInt16": pa.uint16(),
        "UInt32": pa.uint32(),
        "UInt64": pa.uint64(),
        "Date": pa.date32(),
        "Date32": pa.date32(),
    }.get(text)
    if simple is not None:
        return simple
    if _DATETIME64.match(text) or _DATETIME.match(text):
        return pa.timestamp("us", tz="UTC")
    if text.startswith("Array(") and text.endswith(")"):
        item = arrow_type(text[6:-1])
        return None if item is None else pa.list_(item)
    if text.startswith("Map(") and text.endswith(")"):
        arguments = _split_arguments(text[4:-1])
        if len(arguments) != 2:
            return None
        key, value = (arrow_type(a) for a in arguments)
        return None if key is None or value is None else pa.map_(key, value)
    return None


def arrow_schema(columns: Sequence[str], types: Mapping[str, str]) -> Any:
    """The Arrow schema of an insert into ``columns`` (``None`` when a type is unknown)."""
    import pyarrow as pa

    fields = []
    for name in columns:
        ch_type = types.get(name)
        kind = arrow_type(ch_type) if ch_type is not None else None
        if kind is None:
            return None
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def arrow_table(schema: Any, rows: Sequence[Sequence[Any]]) -> Any:
    """``rows`` (one value per column of ``schema``, in order) as an Arrow table.

    Raises ``ValueError`` naming the column when a value does not fit its column.
    """
    import pyarrow as pa

    try:
        columns = list(zip(*rows, strict=True))
    except ValueError as exc:
        raise ValueError(f"rows of different lengths: {exc}") from exc
    if len(columns) != len(schema):
        raise ValueError(f"{len(columns)} values a row for {len(schema)} columns")
    arrays = []
    for field, values in zip(schema, columns, strict=True):
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            raise ValueError(f"column {field.name}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=schema)


def write_stream(table: Any, path: Path) -> None:
    """``table`` as an Arrow IPC stream in the file at ``path`` (replaced)."""
    import pyarrow as pa
    from pyarrow import ipc

    with pa.OSFile(str(path), "wb") as sink, ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
