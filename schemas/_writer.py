"""A schema-compiled Avro binary writer: the encoding hot path.

fastavro's generic writer walks the schema for every datum (≈ 0.6 µs a field);
for the producer's budget (< 20 µs an event, validation included) each record
schema is compiled once into a straight-line Python function that joins the
field encodings. The output is byte-for-byte what ``fastavro.schemaless_writer``
writes (a test compares the two on samples of every record).

Supported: every primitive, enum, fixed, array, map, nested records, unions of
``null`` and one other type, and the logical types ``uuid``,
``timestamp-millis`` and ``timestamp-micros``. For anything else
:func:`compile_writer` returns ``None`` and the codec falls back to fastavro.
Encoders raise plain ``TypeError``/``ValueError``/``KeyError``/``AttributeError``;
the codec turns them into :class:`~schemas.errors.CodecError` naming the field.
"""

from __future__ import annotations

import re
import struct
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["NO_DEFAULT", "Encoder", "compile_field_encoders", "compile_writer", "uvarint"]

Encoder = Callable[[Any], bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MILLI = timedelta(milliseconds=1)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_UUID_TEXT = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack
_BOOL = {True: b"\x01", False: b"\x00"}


def uvarint(n: int) -> bytes:
    """Unsigned LEB128 varint of ``n`` (>= 0); Avro ints are zigzagged first."""
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0x200000:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    if 1 << 49 <= n < 1 << 56:  # today's timestamp-micros
        return bytes(
            (
                n & 0x7F | 0x80,
                n >> 7 & 0x7F | 0x80,
                n >> 14 & 0x7F | 0x80,
                n >> 21 & 0x7F | 0x80,
                n >> 28 & 0x7F | 0x80,
                n >> 35 & 0x7F | 0x80,
                n >> 42 & 0x7F | 0x80,
                n >> 49,
            )
        )
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]
#: length prefixes (zigzagged) of byte strings shorter than 1024 bytes
_LEN = [uvarint(i << 1) for i in range(1024)]


def _len_prefix(data: bytes) -> bytes:
    return uvarint(len(data) << 1)


def _long(value: int) -> bytes:
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"{value!r} does not fit in an Avro long")
    return uvarint((value << 1) ^ (value >> 63))


def _int(value: int) -> bytes:
    if not _INT_MIN <= value <= _INT_MAX:
        raise ValueError(f"{value!r} does not fit in an Avro int")
    return uvarint((value << 1) ^ (value >> 31))


def _timestamp(unit: timedelta) -> Encoder:
    def encode(value: datetime | int) -> bytes:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value.isoformat()}: a timezone is required")
            return _long((value - _EPOCH) // unit)
        return _long(value)

    return encode


def _uuid_text(value: str | uuid.UUID) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if not _UUID_TEXT.fullmatch(value):
        raise ValueError(f"{value!r} is not a UUID")
    return value


def _string(value: str) -> bytes:
    data = value.encode()
    return _len_prefix(data) + data


def _bytes(value: bytes | bytearray | memoryview) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    data = bytes(value)
    return _len_prefix(data) + data


def _null(value: None) -> bytes:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")
    return b""


def _boolean(value: bool) -> bytes:
    return _BOOL[value]


def _logical(schema: Mapping[str, Any]) -> str | None:
    logical = schema.get("logicalType")
    return None if logical is None else f"{schema['type']}-{logical}"


_LOGICAL: dict[str, Encoder] = {
    "long-timestamp-micros": _timestamp(_MICRO),
    "long-timestamp-millis": _timestamp(_MILLI),
    "string-uuid": lambda value: _string(_uuid_text(value)),
}
_PRIMITIVE: dict[str, Encoder] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "float": _pack_float,
    "double": _pack_double,
    "bytes": _bytes,
    "string": _string,
}


class Unsupported(Exception):
    """The schema uses something the compiled writer does not handle."""


def _encoder(schema: Any, named: Mapping[str, Any]) -> Encoder:
    if isinstance(schema, str):
        if schema in _PRIMITIVE:
            return _PRIMITIVE[schema]
        if schema in named:
            return _encoder(named[schema], named)
        raise Unsupported(f"unknown type {schema!r}")
    if isinstance(schema, list):
        return _union(schema, named)
    kind = schema["type"]
    logical = _logical(schema)
    if logical is not None:
        if logical in _LOGICAL:
            return _LOGICAL[logical]
        if kind in _PRIMITIVE and logical.split("-", 1)[1] not in _KNOWN_LOGICAL:
            return _PRIMITIVE[kind]  # unknown logical types are ignored, as in Avro
        raise Unsupported(f"logical type {logical}")
    if kind in _PRIMITIVE:
        return _PRIMITIVE[kind]
    if kind == "enum":
        return _enum_table(schema, named).__getitem__
    if kind == "fixed":
        return _fixed(int(schema["size"]))
    if kind == "array":
        return _array(_encoder(schema["items"], named))
    if kind == "map":
        return _map(_encoder(schema["values"], named))
    if kind == "record" or kind == "error":
        fields = compile_field_encoders(schema, named)
        return lambda value: b"".join(
            [
                enc(value[name] if default is NO_DEFAULT else value.get(name, default))
                for name, enc, default in fields
            ]
        )
    raise Unsupported(f"type {kind!r}")


#: logical types fastavro converts; the compiled writer must not ignore them
_KNOWN_LOGICAL = {
    "decimal",
    "uuid",
    "date",
    "time-millis",
    "time-micros",
    "timestamp-millis",
    "timestamp-micros",
    "timestamp-nanos",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "local-timestamp-nanos",
}


def _fixed(size: int) -> Encoder:
    def encode(value: bytes) -> bytes:
        if not isinstance(value, bytes) or len(value) != size:
            raise ValueError(f"expected {size} bytes for a fixed")
        return value

    return encode


def _array(items: Encoder) -> Encoder:
    def encode(value: list[Any] | tuple[Any, ...]) -> bytes:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if not value:
            return b"\x00"
        return b"".join([_long(len(value)), *[items(item) for item in value], b"\x00"])

    return encode


def _map(values: Encoder) -> Encoder:
    def encode(value: Mapping[str, Any]) -> bytes:
        if not value:
            return b"\x00"
        parts = [_long(len(value))]
        for key, item in value.items():
            parts.append(_string(key))
            parts.append(values(item))
        parts.append(b"\x00")
        return b"".join(parts)

    return encode


def _union(branches: list[Any], named: Mapping[str, Any]) -> Encoder:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported("unions other than [null, T]")
    null_index = branches.index("null")
    other = _encoder(branches[1 - null_index], named)
    null_tag, other_tag = uvarint(null_index << 1), uvarint((1 - null_index) << 1)

    def encode(value: Any) -> bytes:
        return null_tag if value is None else other_tag + other(value)

    return encode


def _python_default(schema: Any, default: Any, named: Mapping[str, Any]) -> Any:
    """An Avro JSON default as the datum the encoders take."""
    kind = schema[0] if isinstance(schema, list) else schema
    if isinstance(kind, str) and kind in named:
        kind = named[kind]
    if isinstance(kind, dict):
        kind = kind["type"]
    if kind in ("bytes", "fixed") and isinstance(default, str):
        return default.encode("latin-1")
    return default


#: the default of a field without one (a private sentinel)
NO_DEFAULT: Any = object()


def compile_field_encoders(
    schema: Mapping[str, Any], named: Mapping[str, Any]
) -> list[tuple[str, Encoder, Any]]:
    """(name, encoder, default or a private sentinel) for every field of a record schema."""
    fields = []
    for field in schema["fields"]:
        default = field.get("default", NO_DEFAULT)
        if default is not NO_DEFAULT:
            default = _python_default(field["type"], default, named)
        fields.append((field["name"], _encoder(field["type"], named), default))
    return fields


def compile_writer(
    parsed: Mapping[str, Any], prefix: bytes = b""
) -> Callable[[Mapping[str, Any]], bytes] | None:
    """Compile a parsed record schema into ``write(datum) -> bytes``; None if unsupported.

    The output starts with ``prefix`` (a framing header). A field missing from
    ``datum`` takes its schema default; without one the writer raises
    ``KeyError``. Fields not in the schema are ignored.
    """
    named = parsed.get("__named_schemas", {})
    try:
        fields = compile_field_encoders(parsed, named)
    except Unsupported:
        return None
    namespace: dict[str, Any] = {"_LEN": _LEN, "_lp": _len_prefix, "_BOOL": _BOOL}
    lines = ["def write(r):"]
    parts = []
    if prefix:
        namespace["_prefix"] = bytes(prefix)
        parts.append("_prefix")
    for index, (name, encoder, default) in enumerate(fields):
        get = f"r[{name!r}]"
        if default is not NO_DEFAULT:
            namespace[f"_d{index}"] = default
            get = f"r.get({name!r}, _d{index})"
        field_schema = parsed["fields"][index]["type"]
        field_type = _field_type(field_schema)
        var = f"f{index}"
        if field_type == "string":
            lines.append(f"    {var} = {get}.encode()")
            parts.append(f"(_LEN[len({var})] if len({var}) < 1024 else _lp({var}))")
            parts.append(var)
        elif field_type == "boolean":
            parts.append(f"_BOOL[{get}]")
        elif field_type == "enum":
            namespace[f"_t{index}"] = _enum_table(field_schema, named)
            parts.append(f"_t{index}[{get}]")
        elif field_type == "nullable":
            null_index = field_schema.index("null")
            namespace[f"_e{index}"] = _encoder(field_schema[1 - null_index], named)
            namespace[f"_n{index}"] = uvarint(null_index << 1)
            namespace[f"_o{index}"] = uvarint((1 - null_index) << 1)
            parts.append(
                f"(_n{index} if (v{index} := {get}) is None else _o{index} + _e{index}(v{index}))"
            )
        elif field_type in ("map", "array"):
            # empty is one zero byte, written inline (``redactions`` is empty on most events)
            namespace[f"_e{index}"] = encoder
            namespace["_C"] = (dict, list, tuple)
            parts.append(
                f"(_e{index}(v{index}) if (v{index} := {get}) or not isinstance(v{index}, _C)"
                " else b'\\x00')"
            )
        else:
            namespace[f"_e{index}"] = encoder
            parts.append(f"_e{index}({get})")
    lines.append(f"    return b''.join(({', '.join(parts)},))")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<avro writer {parsed['name']}>", "exec"), namespace)  # noqa: S102 - source built from field indexes and repr() of names only
    write: Callable[[Mapping[str, Any]], bytes] = namespace["write"]
    return write


def _field_type(schema: Any) -> str | None:
    """How a top-level field is inlined: string, boolean, enum, nullable, map, array (when
    empty); None: a call."""
    if isinstance(schema, list):
        return "nullable" if len(schema) == 2 and "null" in schema else None
    if isinstance(schema, str):
        return schema if schema in ("string", "boolean") else None
    if "logicalType" in schema:
        return None
    kind = schema["type"]
    return str(kind) if kind in ("string", "boolean", "enum", "map", "array") else None


def _enum_table(schema: Any, named: Mapping[str, Any]) -> dict[str, bytes]:
    if isinstance(schema, str):
        schema = named[schema]
    return {symbol: uvarint(index << 1) for index, symbol in enumerate(schema["symbols"])}
