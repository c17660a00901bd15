"""A schema-compiled Avro binary reader: the decoding hot path.

``fastavro.schemaless_reader`` walks the schema for every datum and reads its
input one ``read()`` call per byte (≈ 0.5 µs a field); the sink and the
processors decode every record of every topic. Each record schema is compiled
once into a straight-line Python function over the message's ``bytes`` (the
mirror of :mod:`schemas._writer`). It returns what ``fastavro.schemaless_reader``
returns for the same bytes and the same (writer = reader) schema; a test compares
the two on samples of every record and on corrupted bytes.

Supported: every primitive, enum, fixed, array, map, nested records, unions and
the logical type ``timestamp-micros`` (``uuid`` fields are read as text: the codec
strips that logical type before it parses a schema). For anything else
:func:`compile_reader` returns ``None`` and the codec keeps fastavro, as it does
for every schema resolution (an old writer version read as the current one).

Corrupt input raises plain exceptions (``EOFError`` or ``IndexError`` when the bytes
end early, ``ValueError``, ``UnicodeDecodeError``, ``OverflowError``) that the
codec turns into :class:`~schemas.errors.CodecError`. Where fastavro would read
garbage (a negative enum or union index counts from the end of the list; a varint
longer than 10 bytes), this reader raises ``ValueError`` instead.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from agentstream.schemas._catalog import SchemaVersion, parse_record_schema

__all__ = ["Reader", "compile_reader", "compiled_reader", "decoding_schema", "strip_uuid"]

#: bytes, offset of the body -> (the record, the offset after it)
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_MASK64 = (1 << 64) - 1


def _varint(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte ``first`` (continuation bit set) was read.

    Returns the unsigned 64-bit value (as fastavro's ``ulong64``) and the next offset.
    """
    value = first & 0x7F
    shift = 7
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise ValueError("a varint longer than 10 bytes")


def _bad_index(kind: str, index: int, size: int) -> ValueError:
    return ValueError(f"{kind} index {index} out of range (0..{size - 1})")


def _short(size: int, got: int) -> Exception:
    if size < 0:
        return ValueError(f"negative length {size}")
    return EOFError(f"expected {size} bytes, {max(got, 0)} left")


class _Compiler:
    """Emits the source of one reader function per record schema."""

    def __init__(self, named: Mapping[str, Any]) -> None:
        self.named = named
        self.constants: dict[str, Any] = {
            "_varint": _varint,
            "_bad_index": _bad_index,
            "_short": _short,
            "_EPOCH": _EPOCH,
            "_MICRO": _MICRO,
            "_unpack_float": struct.Struct("<f").unpack_from,
            "_unpack_double": struct.Struct("<d").unpack_from,
        }
        self.functions: dict[str, str] = {}  # record fullname -> function name
        self.sources: list[str] = []
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        key = self.name("_k")
        self.constants[key] = value
        return key

    def record(self, schema: Mapping[str, Any]) -> str:
        """The name of the function reading ``schema`` (a record), compiled once."""
        fullname = str(schema["name"])
        found = self.functions.get(fullname)
        if found is not None:
            return found
        function = self.functions[fullname] = self.name("_record")
        lines = [f"def {function}(b, p):", "    end = len(b)"]
        names = []
        for field in schema["fields"]:
            local = self.name("f")
            names.append((str(field["name"]), local))
            self.value(field["type"], local, lines, 1)
        items = ", ".join(f"{name!r}: {local}" for name, local in names)
        lines.append(f"    return {{{items}}}, p")
        self.sources.append("\n".join(lines))
        return function

    def long(self, target: str, lines: list[str], depth: int) -> None:
        """Read a zigzag varint into ``target``."""
        pad = "    " * depth
        lines += [
            f"{pad}{target} = b[p]",
            f"{pad}p += 1",
            f"{pad}if {target} & 0x80:",
            f"{pad}    {target}, p = _varint(b, p, {target})",
            f"{pad}{target} = ({target} >> 1) ^ -({target} & 1)",
        ]

    def sized(self, target: str, lines: list[str], depth: int, *, text: bool = False) -> None:
        """Read a length-prefixed byte string into ``target`` (``str`` when ``text``)."""
        pad = "    " * depth
        size, stop = self.name("n"), self.name("e")
        decode = ".decode()" if text else ""
        lines += [
            f"{pad}{size} = b[p]",
            f"{pad}p += 1",
            f"{pad}if {size} & 0x81:  # a long or a negative length",
            f"{pad}    if {size} & 0x80:",
            f"{pad}        {size}, p = _varint(b, p, {size})",
            f"{pad}    {size} = ({size} >> 1) ^ -({size} & 1)",
            f"{pad}    if {size} < 0:",
            f"{pad}        raise _short({size}, end - p)",
            f"{pad}else:",
            f"{pad}    {size} >>= 1",
            f"{pad}{stop} = p + {size}",
            f"{pad}if {stop} > end:",
            f"{pad}    raise _short({size}, end - p)",
            f"{pad}{target} = b[p:{stop}]{decode}",
            f"{pad}p = {stop}",
        ]

    def value(self, schema: Any, target: str, lines: list[str], depth: int) -> None:
        """Append the statements reading one value of ``schema`` into ``target``."""
        pad = "    " * depth
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            self.union(schema, target, lines, depth)
            return
        if isinstance(schema, dict):
            kind = schema["type"]
            logical = schema.get("logicalType")
            if logical is not None:
                if kind == "long" and logical == "timestamp-micros":
                    self.long(target, lines, depth)
                    lines.append(f"{pad}{target} = _EPOCH + _MICRO * {target}")
                    return
                raise _Unsupported(f"logical type {logical}")
            if kind == "record" or kind == "error":
                lines.append(f"{pad}{target}, p = {self.record(schema)}(b, p)")
            elif kind == "enum":
                symbols = self.constant(tuple(schema["symbols"]))
                self.long(target, lines, depth)
                lines += [
                    f"{pad}if not 0 <= {target} < {len(schema['symbols'])}:",
                    f"{pad}    raise _bad_index('enum', {target}, {len(schema['symbols'])})",
                    f"{pad}{target} = {symbols}[{target}]",
                ]
            elif kind == "fixed":
                size = int(schema["size"])
                lines += [
                    f"{pad}if p + {size} > end:",
                    f"{pad}    raise _short({size}, end - p)",
                    f"{pad}{target} = b[p:p + {size}]",
                    f"{pad}p += {size}",
                ]
            elif kind == "array":
                self.blocks(schema["items"], None, target, lines, depth)
            elif kind == "map":
                self.blocks(schema["values"], "key", target, lines, depth)
            else:
                self.value(kind, target, lines, depth)
            return
        self.primitive(schema, target, lines, depth)

    def primitive(self, kind: Any, target: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        if kind == "null":
            lines.append(f"{pad}{target} = None")
        elif kind == "boolean":
            lines += [f"{pad}{target} = b[p] != 0", f"{pad}p += 1"]
        elif kind in ("int", "long"):
            self.long(target, lines, depth)
        elif kind == "float":
            lines += [
                f"{pad}if p + 4 > end:",
                f"{pad}    raise _short(4, end - p)",
                f"{pad}{target} = _unpack_float(b, p)[0]",
                f"{pad}p += 4",
            ]
        elif kind == "double":
            lines += [
                f"{pad}if p + 8 > end:",
                f"{pad}    raise _short(8, end - p)",
                f"{pad}{target} = _unpack_double(b, p)[0]",
                f"{pad}p += 8",
            ]
        elif kind == "bytes":
            self.sized(target, lines, depth)
        elif kind == "string":
            self.sized(target, lines, depth, text=True)
        else:
            raise _Unsupported(f"type {kind!r}")

    def union(self, branches: list[Any], target: str, lines: list[str], depth: int) -> None:
        pad = "    " * depth
        index = self.name("i")
        self.long(index, lines, depth)
        for n, branch in enumerate(branches):
            lines.append(f"{pad}{'if' if n == 0 else 'elif'} {index} == {n}:")
            self.value(branch, target, lines, depth + 1)
        lines += [
            f"{pad}else:",
            f"{pad}    raise _bad_index('union', {index}, {len(branches)})",
        ]

    def blocks(self, item: Any, key: str | None, target: str, lines: list[str], depth: int) -> None:
        """An array (``key`` None) or a map: blocks of items until a zero count."""
        pad = "    " * depth
        count, unused, value = self.name("c"), self.name("s"), self.name("v")
        lines.append(f"{pad}{target} = {'[]' if key is None else '{}'}")
        lines.append(f"{pad}while True:")
        self.long(count, lines, depth + 1)
        lines += [
            f"{pad}    if {count} == 0:",
            f"{pad}        break",
            f"{pad}    if {count} < 0:",
            f"{pad}        {count} = -{count}",
        ]
        self.long(unused, lines, depth + 2)
        lines.append(f"{pad}    for _ in range({count}):")
        if key is not None:
            name = self.name("m")
            self.sized(name, lines, depth + 2, text=True)
            self.value(item, value, lines, depth + 2)
            lines.append(f"{pad}        {target}[{name}] = {value}")
        else:
            self.value(item, value, lines, depth + 2)
            lines.append(f"{pad}        {target}.append({value})")


class _Unsupported(Exception):
    """A schema construct the compiler leaves to fastavro."""


def compile_reader(parsed: Mapping[str, Any]) -> Reader | None:
    """The reader of ``parsed`` (fastavro's parsed form of a record schema), or ``None``
    when the schema holds something this module does not compile."""
    compiler = _Compiler(parsed.get("__named_schemas", {}))
    try:
        entry = compiler.record(parsed)
    except _Unsupported:
        return None
    namespace = dict(compiler.constants)
    exec("\n\n".join(compiler.sources), namespace)  # noqa: S102 - source generated above
    reader: Reader = namespace[entry]
    return reader


def strip_uuid(schema: Any) -> Any:
    """The schema with ``uuid`` logical types removed, so those fields decode as text."""
    if isinstance(schema, list):
        return [strip_uuid(item) for item in schema]
    if isinstance(schema, dict):
        if schema.get("logicalType") == "uuid" and schema.get("type") == "string":
            return "string"
        return {key: strip_uuid(value) for key, value in schema.items()}
    return schema


_decoding_cache: dict[bytes, dict[str, Any]] = {}


def decoding_schema(version: SchemaVersion) -> dict[str, Any]:
    """fastavro's parsed form of ``version`` with its ``uuid`` fields read as text."""
    parsed = _decoding_cache.get(version.fingerprint)
    if parsed is None:
        parsed = parse_record_schema(strip_uuid(dict(version.schema)))
        _decoding_cache[version.fingerprint] = parsed
    return parsed


_compiled_readers: dict[bytes, Reader | None] = {}


def compiled_reader(version: SchemaVersion) -> Reader | None:
    """The compiled reader of ``version`` read as itself (``None``: fastavro reads it)."""
    if version.fingerprint not in _compiled_readers:
        _compiled_readers[version.fingerprint] = compile_reader(decoding_schema(version))
    return _compiled_readers[version.fingerprint]
