"""The catalog: Avro record name ↔ pydantic model ↔ parsed schema (and its history).

The ``*.avsc`` files beside this module are the contract; ``history/<Name>/vN.avsc``
keeps every released version so data written with an older version stays
readable (its fingerprint is known and its schema resolves to the current one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any

from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from agentstream.schemas._base import Record
from agentstream.schemas._derived import Alert, InvalidEvent, Rollup
from agentstream.schemas._events import (
    EvalResult,
    Feedback,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
)
from agentstream.schemas.errors import CodecError

__all__ = [
    "MODELS",
    "RECORD_TYPES",
    "RecordType",
    "SchemaVersion",
    "crc64_avro",
    "load_schema_text",
    "parse_record_schema",
    "record_type",
    "version_by_fingerprint",
]

#: every contract model, in the order of the Topics table
MODELS: tuple[type[Record], ...] = (
    ToolCall,
    ModelCall,
    StateTransition,
    ReviewDecision,
    InvalidEvent,
    Rollup,
    Alert,
    EvalResult,
    Feedback,
)

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def crc64_avro(canonical_form: str) -> bytes:
    """CRC-64-AVRO (Rabin) fingerprint of a Parsing Canonical Form, 8 bytes little-endian."""
    return bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))


def parse_record_schema(schema: Any) -> dict[str, Any]:
    """fastavro's parsed form of a record schema (raises :class:`CodecError` otherwise)."""
    parsed = parse_schema(schema)
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        raise CodecError(f"not a record schema: {str(schema)[:80]}")
    return parsed


@dataclass(frozen=True)
class SchemaVersion:
    """One version of a record's schema (a history file, or the current one)."""

    record_name: str
    version: int
    schema: Mapping[str, Any]
    parsed: dict[str, Any] = field(repr=False, compare=False)
    canonical: str = field(repr=False)
    fingerprint: bytes

    @classmethod
    def from_schema(cls, record_name: str, version: int, schema: dict[str, Any]) -> SchemaVersion:
        """Parse ``schema`` (a JSON object) and compute its canonical form and fingerprint."""
        parsed = parse_record_schema(schema)
        canonical = to_parsing_canonical_form(schema)
        return cls(record_name, version, schema, parsed, canonical, crc64_avro(canonical))


@dataclass(frozen=True)
class RecordType:
    """A record of the contract: its model, its current schema and its history."""

    name: str
    fullname: str
    model: type[Record]
    current: SchemaVersion
    history: tuple[SchemaVersion, ...]

    @property
    def schema(self) -> Mapping[str, Any]:
        """The current schema, as written in ``schemas/<name>.avsc``."""
        return self.current.schema

    @property
    def parsed(self) -> dict[str, Any]:
        """The current schema parsed by fastavro (what encoding and decoding use)."""
        return self.current.parsed

    @property
    def fingerprint(self) -> bytes:
        """CRC-64-AVRO fingerprint of the current schema (8 bytes, little-endian)."""
        return self.current.fingerprint

    @property
    def schema_text(self) -> str:
        """The current schema as compact JSON text (what a schema registry stores)."""
        return json.dumps(self.current.schema, separators=(",", ":"), ensure_ascii=False)


def load_schema_text(relative: str) -> str:
    """Text of a packaged schema file: ``"ToolCall.avsc"``, ``"history/ToolCall/v1.avsc"``."""
    return resources.files("agentstream.schemas").joinpath(relative).read_text(encoding="utf-8")


def _load_json(relative: str) -> dict[str, Any]:
    data = json.loads(load_schema_text(relative))
    if not isinstance(data, dict):
        raise CodecError(f"schemas/{relative}: a record schema must be a JSON object")
    return data


def _history(name: str) -> list[tuple[int, dict[str, Any]]]:
    folder = resources.files("agentstream.schemas").joinpath("history", name)
    found: list[tuple[int, dict[str, Any]]] = []
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        match = _VERSION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), _load_json(f"history/{name}/{entry.name}")))
    return sorted(found, key=lambda item: item[0])


def _build(model: type[Record]) -> RecordType:
    name = model.avro_name
    schema = _load_json(f"{name}.avsc")
    history = tuple(SchemaVersion.from_schema(name, v, s) for v, s in _history(name))
    latest = history[-1] if history else None
    if latest is not None and latest.schema == schema:
        current = latest
    else:
        # an edited schema not yet copied into the history: the next version
        next_version = latest.version + 1 if latest is not None else 1
        current = SchemaVersion.from_schema(name, next_version, schema)
    fullname = str(current.parsed["name"])
    return RecordType(name, fullname, model, current, history)


RECORD_TYPES: Mapping[str, RecordType] = MappingProxyType(
    {model.avro_name: _build(model) for model in MODELS}
)

_BY_KEY: dict[object, RecordType] = {}
for _rt in RECORD_TYPES.values():
    _BY_KEY[_rt.name] = _rt
    _BY_KEY[_rt.fullname] = _rt
    _BY_KEY[_rt.model] = _rt

_BY_FINGERPRINT: dict[bytes, tuple[RecordType, SchemaVersion]] = {}
for _rt in RECORD_TYPES.values():
    for _version in _rt.history:
        _BY_FINGERPRINT[_version.fingerprint] = (_rt, _version)
    _BY_FINGERPRINT[_rt.current.fingerprint] = (_rt, _rt.current)


def record_type(key: str | type[Record] | Record) -> RecordType:
    """The :class:`RecordType` of a record name, full name, model class or model instance.

    Raises :class:`CodecError` for an unknown record.
    """
    if isinstance(key, Record):
        key = type(key)
    found = _BY_KEY.get(key)
    if found is None:
        known = ", ".join(RECORD_TYPES)
        raise CodecError(f"unknown record {key!r}; known records: {known}")
    return found


def version_by_fingerprint(fp: bytes) -> tuple[RecordType, SchemaVersion] | None:
    """The record and schema version whose CRC-64-AVRO fingerprint is ``fp``, if any."""
    return _BY_FINGERPRINT.get(fp)
