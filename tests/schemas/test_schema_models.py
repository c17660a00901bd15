"""Contract validation of the models and the errors it raises."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pydantic
import pytest

import agentstream.core.errors
from agentstream.schemas import (
    AgentState,
    Alert,
    CallStatus,
    ContractError,
    ErrorClass,
    EventValidationError,
    InvalidEvent,
    ModelCall,
    Retention,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
    new_uuid,
    validate_event,
)
from tests.support import records

CONTEXT = records.CONTEXT
WINDOW = records.window()


tool_call = records.tool_call


def test_defaults_fill_id_time_and_optional_fields() -> None:
    before = datetime.now(UTC)
    event = tool_call()
    after = datetime.now(UTC)
    parsed = uuid.UUID(event.event_id)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == event.event_id  # canonical lowercase text
    assert before <= event.event_time <= after
    assert event.event_time.tzinfo is UTC
    assert event.error_class is ErrorClass.NONE
    assert event.retention is Retention.BUSINESS
    assert event.attempt == 1
    assert event.params == "{}"
    assert event.trace_id is None
    assert event.result_summary is None
    assert tool_call().event_id != event.event_id


def test_new_uuid_is_random_v4_and_unique() -> None:
    ids = {new_uuid() for _ in range(20_000)}
    assert len(ids) == 20_000
    for text in list(ids)[:200]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_strings_become_enums_and_timestamps_become_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = tool_call(
        status="ERROR",
        error_class="TIMEOUT",
        event_time=datetime(2025, 3, 1, 14, 0, 0, 123456, tzinfo=plus_two),
        event_id=uuid.UUID("0B4E7A0E-5D2C-4C8E-9A57-2D7F0F3C1A11"),
    )
    assert event.status is CallStatus.ERROR
    assert event.error_class is ErrorClass.TIMEOUT
    assert event.event_time == datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert event.event_time.tzinfo is UTC
    assert event.event_id == "0b4e7a0e-5d2c-4c8e-9a57-2d7f0f3c1a11"
    upper = tool_call(event_id="0B4E7A0E-5D2C-4C8E-9A57-2D7F0F3C1A11")
    assert upper.event_id == "0b4e7a0e-5d2c-4c8e-9a57-2d7f0f3c1a11"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"latency_ms": -1}, "ToolCall.latency_ms", "greater than or equal to 0"),
        ({"latency_ms": float("nan")}, "ToolCall.latency_ms", "finite number"),
        ({"timeout_ms": 0}, "ToolCall.timeout_ms", "greater than 0"),
        ({"attempt": 0}, "ToolCall.attempt", "greater than or equal to 1"),
        ({"attempt": 2**31}, "ToolCall.attempt", "less than or equal to 2147483647"),
        ({"tenant_id": ""}, "ToolCall.tenant_id", "at least 1 character"),
        ({"run_id": "r" * 257}, "ToolCall.run_id", "at most 256 characters"),
        ({"tool": None}, "ToolCall.tool", "valid string"),
        ({"status": "FINE"}, "ToolCall.status", "'SUCCESS', 'PARTIAL' or 'ERROR'"),
        ({"event_id": "not-a-uuid"}, "ToolCall.event_id", "should match pattern"),
        ({"event_time": datetime(2025, 1, 1)}, "ToolCall.event_time", "timezone info"),
        ({"params": "{not json"}, "ToolCall.params", "must be JSON text"),
        ({"params": "x" * (64 * 1024 + 1)}, "ToolCall.params", "at most 65536 characters"),
        ({"params": {"when": object()}}, "ToolCall.params", "not JSON-serializable"),
        ({"result_summary": "s" * (16 * 1024 + 1)}, "ToolCall.result_summary", "at most 16384"),
        ({"surprise": 1}, "ToolCall.surprise", "Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_field(overrides: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        tool_call(**overrides)
    error = caught.value
    assert error.fields == (field,)
    assert str(error).startswith(f"{field}: ")
    assert message in str(error)


def test_error_is_a_contract_error_that_carries_pydantic_details() -> None:
    with pytest.raises(ContractError) as caught:
        tool_call(latency_ms=-5, tenant_id="")
    error = caught.value
    assert isinstance(error, EventValidationError)
    assert isinstance(error, ValueError)
    assert isinstance(error.__cause__, pydantic.ValidationError)
    assert set(error.fields) == {"ToolCall.latency_ms", "ToolCall.tenant_id"}
    details = error.errors()
    assert {err["type"] for err in details} == {"greater_than_equal", "string_too_short"}
    assert {err["loc"] for err in details} == {("latency_ms",), ("tenant_id",)}
    assert "ToolCall.latency_ms: Input should be greater than or equal to 0" in str(error)
    assert error.record == "ToolCall"
    details[0]["msg"] = "changed"  # a copy: the error itself is unchanged
    assert "changed" not in str(error.errors())


def test_error_pickles_with_its_details() -> None:
    with pytest.raises(EventValidationError) as caught:
        tool_call(latency_ms=-1)
    clone = pickle.loads(pickle.dumps(caught.value))
    assert type(clone) is EventValidationError
    assert str(clone) == str(caught.value)
    assert clone.fields == caught.value.fields


def test_agentstream_errors_reexports_the_contract_errors() -> None:
    assert agentstream.core.errors.EventValidationError is EventValidationError
    assert agentstream.core.errors.ContractError is ContractError
    assert "EventValidationError" in agentstream.core.errors.__all__
    assert "SchemaRegistryError" in agentstream.core.errors.__all__
    assert "EventValidationError" in (agentstream.core.errors.__doc__ or "")


def test_model_validate_and_validate_event_raise_the_contract_error() -> None:
    data = {**CONTEXT, "tool": "search", "status": "SUCCESS", "latency_ms": 1.0}
    assert validate_event(ToolCall, data).tool == "search"
    assert validate_event(ToolCall, data, tool="fetch").tool == "fetch"
    assert validate_event(ToolCall, **data).latency_ms == 1.0
    with pytest.raises(EventValidationError, match=r"ToolCall\.latency_ms"):
        validate_event(ToolCall, data, latency_ms=-2)
    with pytest.raises(EventValidationError, match=r"ToolCall\.latency_ms"):
        ToolCall.model_validate({**data, "latency_ms": -2})
    with pytest.raises(EventValidationError, match=r"ToolCall\.latency_ms"):
        ToolCall.model_validate_json('{"latency_ms": -2}')


def test_models_are_frozen() -> None:
    event = tool_call()
    with pytest.raises(pydantic.ValidationError):
        event.latency_ms = 3.0  # type: ignore[misc]
    assert event.latency_ms == 12.5
    assert hash(event) == hash(event.model_copy())


def test_params_accepts_json_text_or_serialises_dicts() -> None:
    assert tool_call(params={"q": "Paris", "n": 5}).params == '{"q":"Paris","n":5}'
    assert tool_call(params=["a", 1]).params == '["a",1]'
    assert tool_call(params='{"q": "é"}').params == '{"q": "é"}'
    assert tool_call(params={"x": float("inf")}).params == '{"x":null}'


@pytest.mark.parametrize(
    ("status", "error_class", "ok"),
    [
        ("SUCCESS", "NONE", True),
        ("SUCCESS", "RETRYABLE", False),
        ("PARTIAL", "NONE", True),
        ("PARTIAL", "TIMEOUT", True),
        ("ERROR", "NON_RETRYABLE", True),
        ("ERROR", "NONE", False),
    ],
)
def test_status_and_error_class_agree(status: str, error_class: str, ok: bool) -> None:
    for build in (tool_call, model_call):
        if ok:
            assert build(status=status, error_class=error_class).status == status
        else:
            with pytest.raises(EventValidationError, match="error_class"):
                build(status=status, error_class=error_class)


def model_call(**overrides: Any) -> ModelCall:
    fields: dict[str, Any] = {
        **CONTEXT,
        "model": "gpt-4o",
        "provider": "openai",
        "latency_ms": 900.0,
        "status": "SUCCESS",
    }
    fields.update(overrides)
    return ModelCall(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"input_tokens": -1}, "ModelCall.input_tokens"),
        ({"output_tokens": -1}, "ModelCall.output_tokens"),
        ({"cost_usd": -0.01}, "ModelCall.cost_usd"),
        ({"input_tokens": 2**63}, "ModelCall.input_tokens"),
        ({"provider": ""}, "ModelCall.provider"),
    ],
)
def test_model_call_rejects_negative_usage(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        model_call(**overrides)
    assert caught.value.fields == (field,)


def test_state_transition_and_review() -> None:
    first = StateTransition(**CONTEXT, to_state="INIT")
    assert first.from_state is None
    assert first.to_state is AgentState.INIT
    assert first.synthesized is False
    assert first.dwell_ms is None
    with pytest.raises(EventValidationError, match=r"StateTransition\.dwell_ms"):
        StateTransition(**CONTEXT, from_state="INIT", to_state="PREPARING", dwell_ms=-1)
    with pytest.raises(EventValidationError, match=r"StateTransition\.to_state"):
        StateTransition(**CONTEXT, from_state="INIT", to_state="DONE")
    review = ReviewDecision(**CONTEXT, reviewer="alice", decision="OVERRIDDEN")
    assert review.decision == "OVERRIDDEN"
    assert review.comment is None
    with pytest.raises(EventValidationError, match=r"ReviewDecision\.reviewer"):
        ReviewDecision(**CONTEXT, reviewer="", decision="APPROVED")


def test_rollup_window_and_state_time_keys() -> None:
    rollup = Rollup(
        resolution="1m",
        scope_kind="TOOL",
        scope_key="tool=search",
        state_time_ms={"EXECUTING": 1500},
        **WINDOW,
    )
    assert rollup.state_time_ms == {AgentState.EXECUTING: 1500}
    assert rollup.count == 0
    assert rollup.latency_p95 is None
    assert rollup.latency_sketch is None
    with pytest.raises(EventValidationError, match="window_end must be after window_start"):
        Rollup(
            resolution="1m",
            scope_kind="GLOBAL",
            scope_key="global",
            window_start=WINDOW["window_end"],
            window_end=WINDOW["window_start"],
        )
    with pytest.raises(EventValidationError, match=r"Rollup\.state_time_ms"):
        Rollup(
            resolution="1m",
            scope_kind="GLOBAL",
            scope_key="g",
            state_time_ms={"SLEEPING": 1},
            **WINDOW,
        )
    with pytest.raises(EventValidationError, match=r"Rollup\.resolution"):
        Rollup(resolution="5m", scope_kind="GLOBAL", scope_key="g", **WINDOW)


def test_alert_and_invalid_event() -> None:
    alert = records.alert(channels=["log", "webhook"])
    assert alert.channels == ("log", "webhook")
    assert uuid.UUID(alert.alert_id).version == 4
    with pytest.raises(EventValidationError, match=r"Alert\.comparator"):
        Alert.model_validate({**alert.model_dump(), "comparator": "=>"})
    dead = InvalidEvent(
        source_topic="agent.tool_calls",
        partition=3,
        offset=1234,
        raw=b"\x00garbage",
        reason="cannot decode",
        error_type="CodecError",
    )
    assert dead.key is None
    assert dead.event_id is None
    assert dead.detected_time.tzinfo is UTC
    with pytest.raises(EventValidationError, match=r"InvalidEvent\.offset"):
        InvalidEvent.model_validate({**dead.model_dump(), "offset": -1})
