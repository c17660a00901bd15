"""Issue #16's contract changes: StateTransition v3 (hand-offs, value), Rollup v3, EvalResult
and Feedback. Data written with every earlier version still reads, with the new fields at
their defaults."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from agentstream.core.catalog import stream_of_event
from agentstream.schemas import (
    RECORD_TYPES,
    SINGLE_OBJECT_MAGIC,
    EvalResult,
    EventValidationError,
    Feedback,
    Record,
    Rollup,
    SchemaVersion,
    StateTransition,
    decode,
    decode_model,
    encode_model,
)
from tests.support import records

NEW_FIELDS: dict[str, dict[str, Any]] = {
    "StateTransition": {"parent_run_id": None, "handoff_from_agent": None, "value_usd": None},
    "Rollup": {"handoffs": 0, "value_usd": 0.0},
}


def _written_with(version: SchemaVersion, datum: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, version.parsed, datum)
    return SINGLE_OBJECT_MAGIC + version.fingerprint + out.getvalue()


def _sample(name: str) -> Record:
    if name == "StateTransition":
        return records.transition(to_state="COMPLETED", from_state="REVIEWING", reason="done")
    return records.rollup(count=3, success=3, cost_usd=0.25)


@pytest.mark.parametrize("name", sorted(NEW_FIELDS))
def test_every_older_version_reads_with_the_new_fields_at_their_defaults(name: str) -> None:
    rt = RECORD_TYPES[name]
    assert rt.current.version == 3
    sample = _sample(name)
    for version in rt.history[:-1]:
        fields = {f["name"] for f in version.schema["fields"]}
        assert not fields & set(NEW_FIELDS[name]), f"v{version.version} has a new field"
        datum = {k: v for k, v in sample.to_avro().items() if k in fields}
        data = _written_with(version, datum)
        decoded = decode(data)
        assert decoded.writer_version == version.version
        for field, default in NEW_FIELDS[name].items():
            assert decoded.record[field] == default
        model = decode_model(data)
        assert {k: getattr(model, k) for k in datum} == {k: getattr(sample, k) for k in datum}


def test_a_handoff_transition_round_trips() -> None:
    event = records.transition(
        parent_run_id="run-7", handoff_from_agent="triage", value_usd=None, to_state="INIT"
    )
    assert decode_model(encode_model(event), StateTransition) == event
    done = records.transition(from_state="REVIEWING", to_state="COMPLETED", value_usd=12.5)
    assert decode_model(encode_model(done), StateTransition).value_usd == 12.5


def test_rollup_v3_round_trips_handoffs_and_value() -> None:
    rollup = records.rollup(handoffs=4, value_usd=99.5)
    assert decode_model(encode_model(rollup), Rollup) == rollup


def test_eval_result_and_feedback_round_trip_and_are_cataloged() -> None:
    result = records.eval_result(expected="Paris", got="paris", cost_usd=0.002)
    feedback = records.feedback(satisfaction=5, comment="great")
    assert decode_model(encode_model(result), EvalResult) == result
    assert decode_model(encode_model(feedback), Feedback) == feedback
    eval_stream = stream_of_event(EvalResult)
    feedback_stream = stream_of_event(Feedback)
    assert eval_stream is not None
    assert eval_stream.free_text == ("expected", "got")
    assert feedback_stream is not None
    assert feedback_stream.free_text == ("comment",)
    assert eval_stream.sink == feedback_stream.sink == "dead_letter"


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: records.feedback(satisfaction=0), "satisfaction"),
        (lambda: records.feedback(satisfaction=6), "satisfaction"),
        (lambda: records.eval_result(latency_ms=-1.0), "latency_ms"),
        (lambda: records.transition(value_usd=-3.0), "value_usd"),
    ],
)
def test_bad_values_name_the_field(build: Any, field: str) -> None:
    with pytest.raises(EventValidationError, match=field):
        build()
