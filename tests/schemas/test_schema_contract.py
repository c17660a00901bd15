"""The pydantic models mirror the Avro schemas field for field, in both directions.

Ground truth is the ``*.avsc`` files read as plain JSON here (not through the
catalog), so the models, the catalog and the files cannot drift apart.
"""

from __future__ import annotations

import json
import types
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
import pytest
from pydantic import AwareDatetime, BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agentstream import schemas

SCHEMA_DIR = Path(schemas.__file__).parent
RECORD_NAMES = sorted(path.stem for path in SCHEMA_DIR.glob("*.avsc"))
NAMESPACE = "io.agentstream.v1"
UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
CONTEXT_FIELDS = [
    "event_id",
    "event_time",
    "tenant_id",
    "user_id",
    "agent_id",
    "agent_version",
    "run_id",
    "trace_id",
    "span_id",
]
#: fields generated per instance by the model (a fresh UUID, the current time):
#: no Avro default can express them, so these alone may differ in optionality
GENERATED = {
    ("ToolCall", "event_id"),
    ("ToolCall", "event_time"),
    ("ModelCall", "event_id"),
    ("ModelCall", "event_time"),
    ("StateTransition", "event_id"),
    ("StateTransition", "event_time"),
    ("ReviewDecision", "event_id"),
    ("ReviewDecision", "event_time"),
    ("EvalResult", "event_id"),
    ("EvalResult", "event_time"),
    ("Feedback", "event_id"),
    ("Feedback", "event_time"),
    ("InvalidEvent", "invalid_id"),
    ("InvalidEvent", "detected_time"),
    ("Rollup", "computed_at"),
    ("Alert", "alert_id"),
    ("Alert", "fired_at"),
}


def load(name: str) -> dict[str, Any]:
    data = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def collect_named(schema: Any, named: dict[str, Any]) -> None:
    """Named types defined anywhere in ``schema``, by short name."""
    if isinstance(schema, list):
        for branch in schema:
            collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("enum", "record", "fixed") and "name" in schema:
            named[schema["name"]] = schema
        for key in ("fields", "items", "values"):
            if key in schema:
                value = schema[key]
                items = value if key == "fields" else [value]
                for item in items:
                    collect_named(item["type"] if key == "fields" else item, named)


Desc = tuple[Any, ...]


def avro_desc(schema: Any, named: dict[str, Any]) -> Desc:
    """A normalised description of an Avro type."""
    if isinstance(schema, list):
        non_null = [branch for branch in schema if branch != "null"]
        assert len(schema) == 2, f"unexpected union {schema}"
        assert len(non_null) == 1, f"unexpected union {schema}"
        return ("nullable", avro_desc(non_null[0], named))
    if isinstance(schema, str):
        short = schema.rsplit(".", 1)[-1]
        if short in named:
            return avro_desc(named[short], named)
        return {
            "string": ("str",),
            "int": ("int32",),
            "long": ("int64",),
            "double": ("float",),
            "boolean": ("bool",),
            "bytes": ("bytes",),
        }[schema]
    logical = schema.get("logicalType")
    if logical == "uuid":
        assert schema["type"] == "string"
        return ("uuid",)
    if logical == "timestamp-micros":
        assert schema["type"] == "long"
        return ("timestamp",)
    assert logical is None, f"unexpected logical type {logical}"
    kind = schema["type"]
    if kind == "enum":
        return ("enum", schema["name"], tuple(schema["symbols"]))
    if kind == "array":
        return ("array", avro_desc(schema["items"], named))
    if kind == "map":
        return ("map", avro_desc(schema["values"], named))
    return avro_desc(kind, named)


def unwrap(tp: Any, meta: list[Any]) -> Any:
    while get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        for item in extra:
            meta.extend(item.metadata if isinstance(item, FieldInfo) else [item])
        tp = base
    return tp


def python_desc(tp: Any, meta: list[Any]) -> Desc:
    """The same description, from a pydantic field's annotation and constraints."""
    meta = [*meta]
    tp = unwrap(tp, meta)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [arg for arg in get_args(tp) if arg is not type(None)]
        assert len(args) == 1, f"unexpected union {tp}"
        assert len(get_args(tp)) == 2, f"unexpected union {tp}"
        return ("nullable", python_desc(args[0], []))
    if origin is Literal:
        assert all(isinstance(value, str) for value in get_args(tp))
        return ("str",)
    if origin in (tuple, list):
        items = get_args(tp)
        assert origin is list or (len(items) == 2 and items[1] is Ellipsis), tp
        return ("array", python_desc(items[0], []))
    if origin is dict:
        key, value = get_args(tp)
        assert key is str or (isinstance(key, type) and issubclass(key, StrEnum)), key
        return ("map", python_desc(value, []))
    assert isinstance(tp, type), tp
    if issubclass(tp, StrEnum):
        return ("enum", tp.__name__, tuple(member.value for member in tp))
    if tp is AwareDatetime:  # timestamp-micros must be timezone-aware (fastavro reads UTC)
        return ("timestamp",)
    if tp is bool:
        return ("bool",)
    if tp is int:
        upper = [m.le for m in meta if isinstance(m, annotated_types.Le)]
        assert upper in ([2**31 - 1], [2**63 - 1]), (
            "an int field must be bounded like its Avro type"
        )
        return ("int32",) if upper == [2**31 - 1] else ("int64",)
    if tp is float:
        return ("float",)
    if tp is bytes:
        return ("bytes",)
    if tp is str:
        patterns = [m.pattern for m in meta if isinstance(m, StringConstraints) and m.pattern]
        return ("uuid",) if patterns == [UUID_PATTERN] else ("str",)
    raise AssertionError(f"unmapped annotation {tp!r}")


def avro_default_as_python(desc: Desc, default: Any) -> Any:
    if desc[0] == "array":
        return tuple(default)
    return default


def model_default(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def test_every_schema_file_has_a_model_and_back() -> None:
    assert (
        sorted(
            [
                "ToolCall",
                "ModelCall",
                "StateTransition",
                "ReviewDecision",
                "InvalidEvent",
                "Rollup",
                "Alert",
                "EvalResult",
                "Feedback",
            ]
        )
        == RECORD_NAMES
    )
    assert sorted(model.avro_name for model in schemas.MODELS) == RECORD_NAMES
    assert sorted(schemas.RECORD_TYPES) == RECORD_NAMES
    for name in RECORD_NAMES:
        model = getattr(schemas, name)
        assert schemas.RECORD_TYPES[name].model is model
        assert schemas.RECORD_TYPES[name].schema == load(name)


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_schema_is_a_documented_record_in_the_namespace(name: str) -> None:
    schema = load(name)
    assert schema["type"] == "record"
    assert schema["name"] == name
    assert schema["namespace"] == NAMESPACE
    assert schema["doc"]
    undocumented = [field["name"] for field in schema["fields"] if not field.get("doc")]
    assert undocumented == []


@pytest.mark.parametrize("name", RECORD_NAMES)
def test_model_fields_mirror_schema_fields(name: str) -> None:
    schema = load(name)
    named: dict[str, Any] = {}
    collect_named(schema, named)
    model: type[BaseModel] = getattr(schemas, name)
    avro_fields = {field["name"]: field for field in schema["fields"]}

    # names, in order, both directions
    assert list(model.model_fields) == list(avro_fields)

    for field_name, field in avro_fields.items():
        info = model.model_fields[field_name]
        where = f"{name}.{field_name}"
        expected = avro_desc(field["type"], named)
        assert python_desc(info.annotation, list(info.metadata)) == expected, where

        generated = (name, field_name) in GENERATED
        if "default" in field:
            assert not info.is_required(), f"{where}: Avro has a default, the model requires it"
            assert not generated, f"{where}: a generated field cannot have an Avro default"
            assert model_default(info) == avro_default_as_python(expected, field["default"]), where
        elif generated:
            assert info.default_factory is not None, f"{where}: expected a default factory"
        else:
            assert info.is_required(), f"{where}: no Avro default, but the model has one"
            assert info.default is PydanticUndefined


def test_generated_fields_are_exactly_the_declared_ones() -> None:
    found = {
        (model.avro_name, field_name)
        for model in schemas.MODELS
        for field_name, info in model.model_fields.items()
        if info.default_factory is not None and "default" not in _avro_field(model, field_name)
    }
    assert found == GENERATED


def _avro_field(model: type[schemas.Record], field_name: str) -> dict[str, Any]:
    fields = {field["name"]: field for field in load(model.avro_name)["fields"]}
    return typing.cast(dict[str, Any], fields[field_name])


def test_nullable_fields_default_to_null() -> None:
    for name in RECORD_NAMES:
        for field in load(name)["fields"]:
            if isinstance(field["type"], list):
                assert field["type"][0] == "null", f"{name}.{field['name']}"
                assert "default" in field, f"{name}.{field['name']}"
                assert field["default"] is None, f"{name}.{field['name']}"


def test_events_share_the_context_fields() -> None:
    events = ["ToolCall", "ModelCall", "StateTransition", "ReviewDecision"]
    first = load(events[0])["fields"][: len(CONTEXT_FIELDS)]
    assert [field["name"] for field in first] == CONTEXT_FIELDS
    for name in events[1:]:
        assert load(name)["fields"][: len(CONTEXT_FIELDS)] == first, name
        assert issubclass(getattr(schemas, name), schemas.AgentEvent)


def test_enums_are_identical_wherever_they_are_defined() -> None:
    definitions: dict[str, list[Any]] = {}
    for name in RECORD_NAMES:
        named: dict[str, Any] = {}
        collect_named(load(name), named)
        for type_name, definition in named.items():
            if definition["type"] == "enum":
                definitions.setdefault(type_name, []).append(definition)
    assert {"CallStatus", "ErrorClass", "Retention", "AgentState"} <= set(definitions)
    for type_name, found in definitions.items():
        assert all(item == found[0] for item in found), type_name
        python_enum = getattr(schemas, type_name)
        assert [member.value for member in python_enum] == found[0]["symbols"]
    assert len(definitions["CallStatus"]) == 2  # ToolCall and ModelCall
