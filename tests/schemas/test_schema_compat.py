"""Schema evolution: the current schemas read every committed version; breaking edits fail."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from agentstream import schemas
from agentstream.schemas import (
    RECORD_TYPES,
    SchemaCompatibilityError,
    check_all_history,
    check_compatibility,
    check_history,
    compatibility_problems,
)
from agentstream.schemas._compat import _round_trip_problems, sample_records

HISTORY = Path(schemas.__file__).parent / "history"


def current(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(RECORD_TYPES[name].schema))


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found = next(f for f in schema["fields"] if f["name"] == name)
    assert isinstance(found, dict)
    return found


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_current_schema_reads_every_version_in_history(name: str) -> None:
    versions = sorted(HISTORY.joinpath(name).glob("v*.avsc"))
    assert versions, f"no history for {name}"
    assert next(p.name for p in versions) == "v1.avsc"
    check_history(name)


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_latest_history_version_is_the_current_schema(name: str) -> None:
    """Editing a schema means committing it as the next version in history/."""
    versions = sorted(HISTORY.joinpath(name).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    latest = json.loads(versions[-1].read_text(encoding="utf-8"))
    assert latest == RECORD_TYPES[name].schema
    assert RECORD_TYPES[name].current.version == len(versions)
    assert [v.version for v in RECORD_TYPES[name].history] == list(range(1, len(versions) + 1))


def test_check_all_history_passes() -> None:
    check_all_history()


def test_adding_a_field_with_a_default_is_compatible() -> None:
    writer = current("ToolCall")
    reader = current("ToolCall")
    reader["fields"].append({"name": "region", "type": ["null", "string"], "default": None})
    reader["fields"].append({"name": "priority", "type": "int", "default": 0})
    assert compatibility_problems(writer, reader) == []
    check_compatibility(writer, reader, "ToolCall v1 → next")


def test_removing_a_default_from_a_new_field_is_caught() -> None:
    # the older writer has no error_code; the new reader drops that field's default
    writer = current("ToolCall")
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "error_code"]
    reader = current("ToolCall")
    del field(reader, "error_code")["default"]
    with pytest.raises(SchemaCompatibilityError) as caught:
        check_compatibility(writer, reader, "ToolCall v1 → next")
    message = str(caught.value)
    assert message.startswith("ToolCall v1 → next: ")
    assert "ToolCall.error_code: field added without a default" in message


def test_changing_a_type_is_caught_and_promotions_are_not() -> None:
    writer = current("ToolCall")
    reader = current("ToolCall")
    field(reader, "latency_ms")["type"] = "string"
    problems = compatibility_problems(writer, reader)
    assert problems == [
        "ToolCall.latency_ms: type changed from double to string (not an Avro promotion)"
    ]
    with pytest.raises(SchemaCompatibilityError, match=r"ToolCall\.latency_ms: type changed"):
        check_compatibility(writer, reader, "ToolCall v1 → next")

    promoted = current("ToolCall")
    field(promoted, "attempt")["type"] = "long"  # int → long is an Avro promotion
    assert compatibility_problems(writer, promoted) == []
    demoted = current("ModelCall")
    field(demoted, "input_tokens")["type"] = "int"  # long → int is not
    assert compatibility_problems(current("ModelCall"), demoted) == [
        "ModelCall.input_tokens: type changed from long to int (not an Avro promotion)"
    ]


def test_removing_an_enum_symbol_needs_an_enum_default() -> None:
    writer = current("ToolCall")
    reader = current("ToolCall")
    field(reader, "status")["type"]["symbols"] = ["SUCCESS", "ERROR"]
    assert compatibility_problems(writer, reader) == [
        "ToolCall.status: enum symbol(s) PARTIAL removed without an enum default"
    ]
    field(reader, "status")["type"]["default"] = "ERROR"
    assert compatibility_problems(writer, reader) == []
    added = current("ToolCall")
    field(added, "status")["type"]["symbols"].append("SKIPPED")  # adding is fine
    assert compatibility_problems(writer, added) == []


def test_nullability_rules() -> None:
    writer = current("ToolCall")
    required = current("ToolCall")
    field(required, "error_code")["type"] = "string"
    del field(required, "error_code")["default"]
    assert compatibility_problems(writer, required) == [
        "ToolCall.error_code: writer union branch null cannot be read as string"
    ]
    widened = current("ToolCall")
    field(widened, "tool")["type"] = ["null", "string"]
    assert compatibility_problems(writer, widened) == []


def test_renames_logical_types_and_nested_types() -> None:
    writer = current("Rollup")
    renamed = current("Rollup")
    field(renamed, "scope_kind")["type"]["name"] = "Scope"
    assert compatibility_problems(writer, renamed) == [
        "Rollup.scope_kind: enum renamed from io.agentstream.v1.ScopeKind to "
        "io.agentstream.v1.Scope (no alias)"
    ]
    field(renamed, "scope_kind")["type"]["aliases"] = ["ScopeKind"]
    assert compatibility_problems(writer, renamed) == []

    millis = current("Rollup")
    field(millis, "window_start")["type"]["logicalType"] = "timestamp-millis"
    assert compatibility_problems(writer, millis) == [
        "Rollup.window_start: logical type changed from timestamp-micros to timestamp-millis"
    ]

    nested = current("Rollup")
    field(nested, "state_time_ms")["type"]["values"] = "int"
    assert compatibility_problems(writer, nested) == [
        "Rollup.state_time_ms{}: type changed from long to int (not an Avro promotion)"
    ]
    alert_writer, alert_reader = current("Alert"), current("Alert")
    field(alert_reader, "channels")["type"]["items"] = "bytes"  # string → bytes promotes
    assert compatibility_problems(alert_writer, alert_reader) == []
    field(alert_reader, "channels")["type"]["items"] = "int"
    assert compatibility_problems(alert_writer, alert_reader) == [
        "Alert.channels[]: type changed from string to int (not an Avro promotion)"
    ]


def test_renamed_field_with_alias_is_compatible() -> None:
    writer = current("ReviewDecision")
    reader = current("ReviewDecision")
    field(reader, "comment")["name"] = "note"
    assert compatibility_problems(writer, reader) == []  # nullable: has a default
    del field(reader, "note")["default"]
    field(reader, "note")["type"] = "string"
    assert compatibility_problems(writer, reader) == [
        "ReviewDecision.note: field added without a default"
    ]
    field(reader, "note")["aliases"] = ["comment"]
    assert compatibility_problems(writer, reader) == [
        "ReviewDecision.note: writer union branch null cannot be read as string"
    ]


def test_an_invalid_schema_is_a_compatibility_error() -> None:
    writer = current("ToolCall")
    writer["fields"] = [f for f in writer["fields"] if f["name"] != "attempt"]
    reader = current("ToolCall")
    field(reader, "attempt")["default"] = "one"  # not an int
    [problem] = compatibility_problems(writer, reader)
    assert problem.startswith("ToolCall: reader schema is invalid: ")
    with pytest.raises(SchemaCompatibilityError, match="ToolCall: reader schema is invalid"):
        check_compatibility(writer, reader, "ToolCall v1 → next")


def test_round_trip_check_detects_breaks_on_its_own() -> None:
    """The second, independent detector: encode samples with the writer, read with the reader."""
    writer = current("ToolCall")
    assert _round_trip_problems(writer, current("ToolCall"), "ToolCall") == []
    reader = current("ToolCall")
    field(reader, "latency_ms")["type"] = "string"
    [problem] = _round_trip_problems(writer, reader, "ToolCall")
    assert problem.startswith("ToolCall: sample 0 does not round-trip")
    added = current("ToolCall")
    added["fields"].append({"name": "region", "type": "string"})
    assert _round_trip_problems(writer, added, "ToolCall") != []


def test_samples_visit_every_enum_symbol_and_union_branch() -> None:
    schema = current("StateTransition")
    samples = sample_records(schema)
    assert {s["to_state"] for s in samples} == {
        "INIT",
        "PREPARING",
        "EXECUTING",
        "REVIEWING",
        "COMPLETED",
        "FAILED",
    }
    assert {s["reason"] is None for s in samples} == {True, False}
    parsed = fastavro.parse_schema(schema)
    for sample in samples:
        fastavro.validation.validate(sample, parsed, raise_errors=True)
