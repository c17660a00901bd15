"""Schema evolution: can the current (reader) schema read data an older writer wrote?

Two checks, both run by :func:`check_compatibility`:

1. **rules** (Avro schema resolution, stricter on logical types): a reader field
   missing from the writer needs a default; a type may only change by an Avro
   promotion (int → long/float/double, long → float/double, float → double,
   string ↔ bytes); enum symbols the writer has must exist in the reader unless
   the reader enum has a ``default``; named types keep their name (or alias);
   every writer union branch must be readable; logical types must not change.
2. **round trip**: samples generated from the writer schema (every union
   branch and enum symbol in turn) are encoded with the writer and decoded with
   the reader by fastavro.

A problem raises :class:`SchemaCompatibilityError` naming the record and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import expand_schema

from agentstream.schemas._catalog import RECORD_TYPES, RecordType
from agentstream.schemas.errors import SchemaCompatibilityError

__all__ = [
    "check_all_history",
    "check_compatibility",
    "check_history",
    "compatibility_problems",
    "sample_records",
]

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = ("record", "error", "enum", "fixed")


def _expand(schema: Any) -> Any:
    """Fully expanded schema: named references replaced by their definitions, full names."""
    return expand_schema(schema)


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def _describe(schema: Any) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(branch) for branch in schema) + "]"
    if isinstance(schema, dict):
        name = schema.get("name")
        logical = schema.get("logicalType")
        kind = str(schema["type"]) if name is None else f"{schema['type']} {name}"
        return f"{kind} ({logical})" if logical else kind
    return str(schema)


def _names_match(writer: Mapping[str, Any], reader: Mapping[str, Any]) -> bool:
    if writer["name"] == reader["name"]:
        return True
    aliases = reader.get("aliases") or []
    short = str(writer["name"]).rsplit(".", 1)[-1]
    return writer["name"] in aliases or short in aliases


def _matches(writer: Any, reader: Any) -> bool:
    """Whether a union branch of the reader is the one a writer type resolves to."""
    w, r = _kind(writer), _kind(reader)
    if w in _NAMED or r in _NAMED:
        return w == r and _names_match(writer, reader)
    return w == r or r in _PROMOTIONS.get(w, set())


def _check(writer: Any, reader: Any, path: str, problems: list[str]) -> None:
    w, r = _kind(writer), _kind(reader)
    if w == "union":
        for branch in writer:
            if r == "union" or _matches(branch, reader):
                _check(branch, reader, path, problems)
            else:
                problems.append(
                    f"{path}: writer union branch {_describe(branch)} "
                    f"cannot be read as {_describe(reader)}"
                )
        return
    if r == "union":
        for branch in reader:
            if _matches(writer, branch):
                _check(writer, branch, path, problems)
                return
        problems.append(f"{path}: writer type {_describe(writer)} is not in the reader's union")
        return
    w_logical = writer.get("logicalType") if isinstance(writer, dict) else None
    r_logical = reader.get("logicalType") if isinstance(reader, dict) else None
    if w_logical != r_logical:
        problems.append(f"{path}: logical type changed from {w_logical} to {r_logical}")
        return
    if w != r:
        if r not in _PROMOTIONS.get(w, set()):
            problems.append(
                f"{path}: type changed from {_describe(writer)} to {_describe(reader)} "
                "(not an Avro promotion)"
            )
        return
    if w in _NAMED and not _names_match(writer, reader):
        problems.append(f"{path}: {w} renamed from {writer['name']} to {reader['name']} (no alias)")
        return
    if w in ("record", "error"):
        _check_record(writer, reader, path, problems)
    elif w == "enum":
        removed = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if removed and "default" not in reader:
            problems.append(
                f"{path}: enum symbol(s) {', '.join(removed)} removed without an enum default"
            )
    elif w == "fixed":
        if writer["size"] != reader["size"]:
            problems.append(f"{path}: fixed size changed from {writer['size']} to {reader['size']}")
    elif w == "array":
        _check(writer["items"], reader["items"], f"{path}[]", problems)
    elif w == "map":
        _check(writer["values"], reader["values"], f"{path}{{}}", problems)


def _check_record(
    writer: Mapping[str, Any], reader: Mapping[str, Any], path: str, problems: list[str]
) -> None:
    by_name = {field["name"]: field for field in writer["fields"]}
    for field in reader["fields"]:
        names = [field["name"], *(field.get("aliases") or [])]
        source = next((by_name[name] for name in names if name in by_name), None)
        field_path = f"{path}.{field['name']}"
        if source is None:
            if "default" not in field:
                problems.append(f"{field_path}: field added without a default")
            continue
        _check(source["type"], field["type"], field_path, problems)


def compatibility_problems(writer: Any, reader: Any, label: str | None = None) -> list[str]:
    """Every rule the reader breaks for data written with ``writer`` (empty: compatible).

    Each problem starts with the field's path, ``Record.field``.
    """
    expanded = []
    for role, schema in (("writer", writer), ("reader", reader)):
        try:
            expanded.append(_expand(schema))
        except Exception as exc:
            return [f"{label or _short_name(schema)}: {role} schema is invalid: {exc}"]
    w, r = expanded
    root = label or _short_name(r)
    problems: list[str] = []
    _check(w, r, root, problems)
    return problems


def _short_name(schema: Any) -> str:
    if isinstance(schema, dict) and "name" in schema:
        return str(schema["name"]).rsplit(".", 1)[-1]
    return "schema"


def sample_records(schema: Any) -> list[Any]:
    """Data for ``schema`` that visits each union branch and enum symbol at least once."""
    expanded = _expand(schema)
    variants = max(2, _widest(expanded))
    return [_sample(expanded, k) for k in range(variants)]


def _widest(schema: Any) -> int:
    kind = _kind(schema)
    if kind == "union":
        return max([len(schema), *(_widest(branch) for branch in schema)])
    if kind == "enum":
        return len(schema["symbols"])
    if kind in ("record", "error"):
        return max([1, *(_widest(field["type"]) for field in schema["fields"])])
    if kind == "array":
        return _widest(schema["items"])
    if kind == "map":
        return _widest(schema["values"])
    return 1


_PRIMITIVE_SAMPLES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "int": 7,
    "long": 1_700_000_000_000_000,
    "float": 1.5,
    "double": 2.25,
    "bytes": b"\x00\xffsample",
    "string": "sample",
}


def _sample(schema: Any, k: int) -> Any:
    kind = _kind(schema)
    if kind == "union":
        return _sample(schema[k % len(schema)], k)
    if isinstance(schema, dict) and schema.get("logicalType") == "uuid":
        return "0b4e7a0e-5d2c-4c8e-9a57-2d7f0f3c1a11"
    if kind in _PRIMITIVE_SAMPLES:
        return _PRIMITIVE_SAMPLES[kind]
    if kind == "enum":
        return schema["symbols"][k % len(schema["symbols"])]
    if kind == "fixed":
        return b"\x01" * int(schema["size"])
    if kind == "array":
        return [_sample(schema["items"], k)]
    if kind == "map":
        return {"key": _sample(schema["values"], k)}
    return {field["name"]: _sample(field["type"], k) for field in schema["fields"]}


def _round_trip_problems(writer: Any, reader: Any, label: str) -> list[str]:
    parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
    problems = []
    for index, sample in enumerate(sample_records(writer)):
        buffer = BytesIO()
        try:
            schemaless_writer(buffer, parsed_writer, sample)
            buffer.seek(0)
            schemaless_reader(buffer, parsed_writer, parsed_reader)
        except Exception as exc:
            problems.append(f"{label}: sample {index} does not round-trip: {exc}")
            break
    return problems


def check_compatibility(writer: Any, reader: Any, label: str) -> None:
    """Raise :class:`SchemaCompatibilityError` if ``reader`` cannot read ``writer``'s data.

    ``label`` names the record and versions in the message, e.g. ``"ToolCall v1 → current"``.
    """
    record = _short_name(reader)
    problems = compatibility_problems(writer, reader, record)
    if not problems:
        problems = _round_trip_problems(writer, reader, record)
    if problems:
        raise SchemaCompatibilityError(f"{label}: " + "; ".join(problems))


def check_history(record: str | RecordType) -> None:
    """The current schema of ``record`` reads data of every version in its history."""
    rt = record if isinstance(record, RecordType) else RECORD_TYPES[record]
    for version in rt.history:
        check_compatibility(
            dict(version.schema), dict(rt.schema), f"{rt.name} v{version.version} → current"
        )


def check_all_history() -> None:
    """:func:`check_history` for every record of the contract."""
    for rt in RECORD_TYPES.values():
        check_history(rt)
