"""The emit pipeline and the helpers, through the InMemoryEmitter (no broker needed)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from agentstream import (
    AgentState,
    CallStatus,
    ContractError,
    ErrorClass,
    EventValidationError,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
    current_tool_call,
    run_context,
)
from agentstream.core.config import Settings, load_settings
from agentstream.schemas import AvroCodec, InMemorySchemaRegistry, Rollup
from agentstream.testing import InMemoryEmitter

TRACER = TracerProvider().get_tracer("test")


class ServiceUnavailable(Exception):
    status_code = 503


@pytest.fixture
def settings() -> Settings:
    return load_settings(topics={"prefix": "t."})


@pytest.fixture
def emitter(settings: Settings) -> InMemoryEmitter:
    return InMemoryEmitter(settings)


@pytest.fixture
def run() -> Iterator[None]:
    with run_context(
        tenant_id="acme", agent_id="planner", agent_version="1.4.0", user_id="u-17", run_id="r-1"
    ):
        yield


def _ids(event: Any) -> tuple[str, ...]:
    return (event.tenant_id, event.user_id, event.agent_id, event.agent_version, event.run_id)


@pytest.mark.usefixtures("run")
def test_a_tool_call_records_ids_latency_and_result(emitter: InMemoryEmitter) -> None:
    outer_start = time.perf_counter()
    with emitter.tool_call("search", params={"q": "weather"}, timeout_ms=500, attempt=2) as call:
        call.result_summary = "3 results"
    outer_ms = (time.perf_counter() - outer_start) * 1000
    [message] = emitter.messages
    event = message.event
    assert isinstance(event, ToolCall)
    assert call.event == event
    assert _ids(event) == ("acme", "u-17", "planner", "1.4.0", "r-1")
    assert (event.tool, event.status, event.error_class) == ("search", "SUCCESS", "NONE")
    assert 0 <= event.latency_ms <= outer_ms
    assert (event.timeout_ms, event.attempt, event.result_summary) == (500, 2, "3 results")
    assert json.loads(event.params) == {"q": "weather"}
    assert (message.topic, message.key) == ("t.tool_calls", b"r-1")
    assert emitter.decoded() == [event]


@pytest.mark.usefixtures("run")
def test_an_exception_becomes_an_error_event_and_is_reraised(emitter: InMemoryEmitter) -> None:
    with pytest.raises(ServiceUnavailable), emitter.tool_call("fetch"):
        raise ServiceUnavailable
    with pytest.raises(TimeoutError), emitter.tool_call("slow"):
        raise TimeoutError
    with pytest.raises(ValueError, match="bad input"), emitter.tool_call("parse"):
        raise ValueError("bad input")
    outcomes = [
        (e.tool, e.status, e.error_class, e.error_code) for e in emitter.events_of(ToolCall)
    ]
    assert outcomes == [
        ("fetch", "ERROR", "RETRYABLE", "503"),
        ("slow", "ERROR", "TIMEOUT", "TimeoutError"),
        ("parse", "ERROR", "NON_RETRYABLE", "ValueError"),
    ]


@pytest.mark.usefixtures("run")
def test_partial_fallback_and_handled_failures(emitter: InMemoryEmitter) -> None:
    with emitter.tool_call("search", idempotent=True, atomic=True, retention="LEGAL") as call:
        call.status = CallStatus.PARTIAL
        call.fallback_used = True
        call.output_valid = False
    with emitter.tool_call("lookup") as call:
        try:
            raise ConnectionResetError
        except ConnectionResetError as exc:
            call.fail(exc)  # handled: no re-raise, still recorded
    with emitter.tool_call("quota") as call:
        call.fail(ErrorClass.RETRYABLE, code="429")
    with emitter.tool_call("typo") as call, pytest.raises(ContractError, match="error_class"):
        call.fail("RETRYABEL")
    first, second, third, _ = emitter.events_of(ToolCall)
    assert (first.status, first.fallback_used, first.output_valid) == ("PARTIAL", True, False)
    assert (first.idempotent, first.atomic, first.retention) == (True, True, "LEGAL")
    assert (second.status, second.error_class, second.error_code) == (
        "ERROR",
        "RETRYABLE",
        "ConnectionResetError",
    )
    assert (third.error_class, third.error_code) == ("RETRYABLE", "429")


@pytest.mark.usefixtures("run")
def test_async_with_and_decorators(emitter: InMemoryEmitter) -> None:
    @emitter.traced()
    async def search(q: str) -> str:
        scope = current_tool_call()
        assert scope is not None
        assert scope.tool == "search"
        scope.result_summary = f"answer to {q}"
        await asyncio.sleep(0)
        return q.upper()

    @emitter.tool_call("rank", attempt=3)
    def rank(items: list[int]) -> list[int]:
        return sorted(items)

    @emitter.traced("flaky")
    async def flaky() -> None:
        raise TimeoutError

    async def main() -> list[str]:
        async with emitter.tool_call("plan") as call:
            call.result_summary = "planned"
        with pytest.raises(TimeoutError):
            await flaky()
        return list(await asyncio.gather(search("a"), search("b")))

    assert asyncio.run(main()) == ["A", "B"]
    assert rank([3, 1, 2]) == [1, 2, 3]
    assert rank([2, 1]) == [1, 2]
    assert current_tool_call() is None
    events = emitter.events_of(ToolCall)
    assert [e.tool for e in events] == ["plan", "flaky", "search", "search", "rank", "rank"]
    assert sorted(e.result_summary or "" for e in events if e.tool == "search") == [
        "answer to a",
        "answer to b",
    ]
    assert events[1].error_class == "TIMEOUT"
    assert [e.attempt for e in events if e.tool == "rank"] == [3, 3]
    assert len({e.event_id for e in events}) == len(events)


def test_a_scope_is_single_use_and_generators_are_refused(emitter: InMemoryEmitter) -> None:
    scope = emitter.tool_call("x")
    with run_context(tenant_id="t", agent_id="a"):
        with scope:
            pass
        with pytest.raises(RuntimeError, match="used once"), scope:
            pass

    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        emitter.traced()(gen)


def test_no_run_context_fails_before_the_tool_runs(emitter: InMemoryEmitter) -> None:
    ran = []
    with pytest.raises(EventValidationError) as info, emitter.tool_call("search"):
        ran.append(True)
    assert ran == []
    assert "ToolCall.run_id" in info.value.fields
    assert "ToolCall.tenant_id" in info.value.fields
    assert isinstance(info.value, ContractError)
    assert emitter.messages == []


@pytest.mark.usefixtures("run")
def test_transitions_fill_from_state_per_run(settings: Settings) -> None:
    emitter = InMemoryEmitter(
        settings.model_copy(
            update={"emitter": settings.emitter.model_copy(update={"max_tracked_runs": 2})}
        )
    )
    emitter.transition("INIT")
    emitter.transition(AgentState.PREPARING)
    emitter.transition("INIT", run_id="r-2")
    emitter.transition("EXECUTING", reason="plan ready")
    emitter.transition("FAILED", from_state="EXECUTING", error_category="TOOL", run_id="r-2")
    emitter.transition("COMPLETED")
    emitter.transition("INIT", run_id="r-3")
    emitter.transition("INIT", run_id="r-4")
    emitter.transition("PREPARING", run_id="r-5")  # forgotten runs start over
    emitter.transition("PREPARING", run_id="r-3")
    moves = [(e.run_id, e.from_state, e.to_state) for e in emitter.events_of(StateTransition)]
    assert moves == [
        ("r-1", None, "INIT"),
        ("r-1", "INIT", "PREPARING"),
        ("r-2", None, "INIT"),
        ("r-1", "PREPARING", "EXECUTING"),
        ("r-2", "EXECUTING", "FAILED"),
        ("r-1", "EXECUTING", "COMPLETED"),
        ("r-3", None, "INIT"),
        ("r-4", None, "INIT"),
        ("r-5", None, "PREPARING"),
        ("r-3", None, "PREPARING"),  # only 2 runs are tracked: r-4 and r-5 pushed r-3 out
    ]
    assert emitter.events_of(StateTransition)[3].reason == "plan ready"


@pytest.mark.usefixtures("run")
def test_model_calls_and_reviews(emitter: InMemoryEmitter) -> None:
    call = emitter.model_call("gpt-4o", "openai", 1200, 350, 0.0123, 812.5)
    failed = emitter.model_call(
        "claude",
        "anthropic",
        10,
        0,
        0.0,
        30.0,
        status="ERROR",
        error_class="RETRYABLE",
        error_code="529",
    )
    review = emitter.review("alice", "OVERRIDDEN", "wrong answer, mail me at alice@example.com")
    assert isinstance(call, ModelCall)
    assert isinstance(review, ReviewDecision)
    assert (call.input_tokens, call.output_tokens, call.cost_usd, call.latency_ms) == (
        1200,
        350,
        0.0123,
        812.5,
    )
    assert (failed.status, failed.error_class, failed.error_code) == ("ERROR", "RETRYABLE", "529")
    assert review.comment == "wrong answer, mail me at [REDACTED:email]"
    assert [m.topic for m in emitter.messages] == ["t.model_calls"] * 2 + ["t.reviews"]
    assert emitter.decoded() == [call, failed, review]


@pytest.mark.usefixtures("run")
@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"status": "MAYBE"}, "ToolCall.status"),
        ({"latency_ms": -1.0}, "ToolCall.latency_ms"),
        ({"latency_ms": float("nan")}, "ToolCall.latency_ms"),
        ({"attempt": 0}, "ToolCall.attempt"),
        ({"params": "{not json"}, "ToolCall.params"),
        # a model-level rule: ERROR needs an error class
        ({"status": "ERROR"}, "status ERROR requires an error_class"),
    ],
)
def test_invalid_fields_are_refused_at_emit_naming_the_field(
    emitter: InMemoryEmitter, fields: dict[str, Any], bad_field: str
) -> None:
    values = {"tool": "search", "status": "SUCCESS", "latency_ms": 5.0, **fields}
    with pytest.raises(EventValidationError) as info:
        emitter.emit(ToolCall, **values)
    assert bad_field in info.value.fields or bad_field in str(info.value)
    assert emitter.messages == []


def test_a_missing_run_id_is_named(emitter: InMemoryEmitter) -> None:
    ids = {"tenant_id": "t", "user_id": "u", "agent_id": "a", "agent_version": "1"}
    with pytest.raises(EventValidationError) as info:
        emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, **ids)
    assert info.value.fields == ("ToolCall.run_id",)
    with pytest.raises(EventValidationError) as built:
        ToolCall(tool="x", status="SUCCESS", latency_ms=1.0, run_id="", **ids)
    assert built.value.fields == ("ToolCall.run_id",)


@pytest.mark.usefixtures("run")
def test_an_oversize_event_names_its_largest_field(settings: Settings) -> None:
    small = settings.model_copy(
        update={"emitter": settings.emitter.model_copy(update={"max_event_bytes": 2048})}
    )
    emitter = InMemoryEmitter(small)
    emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, params={"q": "y" * 1500})
    with pytest.raises(EventValidationError) as info:
        emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, params={"q": "y" * 3000})
    assert info.value.fields == ("ToolCall.params",)
    assert "over the 2048-byte limit" in str(info.value)
    with pytest.raises(EventValidationError) as summary, emitter.tool_call("x") as call:
        call.result_summary = "z" * 5000
    assert summary.value.fields == ("ToolCall.result_summary",)
    assert len(emitter.messages) == 1


@pytest.mark.usefixtures("run")
def test_a_bad_outcome_set_on_the_scope_is_refused_at_exit(emitter: InMemoryEmitter) -> None:
    with pytest.raises(EventValidationError) as info, emitter.tool_call("x") as call:
        call.status = "UNKNOWN"
    assert info.value.fields == ("ToolCall.status",)


@pytest.mark.usefixtures("run")
def test_the_tools_exception_wins_over_a_contract_problem(emitter: InMemoryEmitter) -> None:
    def tool() -> None:
        with emitter.tool_call("x") as call:
            call.result_summary = "z" * 20_000  # too long for the contract
            raise KeyError("k")

    with pytest.raises(KeyError) as info:
        tool()
    assert any("the ToolCall event was not emitted" in note for note in info.value.__notes__)
    assert emitter.messages == []


@pytest.mark.usefixtures("run")
def test_built_events_are_redacted_and_traced(emitter: InMemoryEmitter) -> None:
    event = ToolCall(
        tenant_id="t",
        user_id="u",
        agent_id="a",
        agent_version="1",
        run_id="r-9",
        tool="mail",
        status="SUCCESS",
        latency_ms=3.0,
        params='{"to": "bob@example.com", "password": "hunter2"}',
        result_summary="sent to +44 20 7946 0958",
    )
    with TRACER.start_as_current_span("agent-step") as span:
        sent = emitter.emit(event)
        ctx = span.get_span_context()
    assert sent is not event
    assert sent.event_id == event.event_id
    assert json.loads(sent.params) == {"to": "[REDACTED:email]", "password": "[REDACTED:password]"}
    assert sent.result_summary == "sent to [REDACTED:phone]"
    assert sent.redactions == {"email": 1, "password": 1, "phone": 1}
    assert (sent.trace_id, sent.span_id) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    [message] = emitter.messages
    assert message.header("traceparent") == (
        f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01".encode()
    )
    assert message.key == b"r-9"
    assert emitter.decoded() == [sent]


@pytest.mark.usefixtures("run")
def test_helpers_take_the_span_active_when_the_call_starts(emitter: InMemoryEmitter) -> None:
    with TRACER.start_as_current_span("tool") as span, emitter.tool_call("x"):
        ctx = span.get_span_context()
    with emitter.tool_call("untraced"):
        pass
    traced, untraced = emitter.messages
    assert traced.event.trace_id == f"{ctx.trace_id:032x}"
    assert traced.header("traceparent") is not None
    assert untraced.event.trace_id is None
    assert untraced.headers == ()


def test_foreign_trace_ids_are_kept_without_a_header(emitter: InMemoryEmitter) -> None:
    with run_context(tenant_id="t", agent_id="a"):
        emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, trace_id="req-42")
    [message] = emitter.messages
    assert message.event.trace_id == "req-42"
    assert message.headers == ()


def test_redaction_can_be_turned_off(settings: Settings) -> None:
    plain = settings.model_copy(
        update={"emitter": settings.emitter.model_copy(update={"redact": False})}
    )
    emitter = InMemoryEmitter(plain)
    with (
        run_context(tenant_id="t", agent_id="a"),
        emitter.tool_call("mail", params={"to": "x@y.io"}),
    ):
        pass
    assert json.loads(emitter.events_of(ToolCall)[0].params) == {"to": "x@y.io"}


@pytest.mark.usefixtures("run")
def test_params_that_are_not_json_are_recorded_by_repr(emitter: InMemoryEmitter) -> None:
    class Query:
        def __repr__(self) -> str:
            return "Query(q='x')"

    with emitter.tool_call("search", params={"query": Query(), "n": 3}):
        pass
    assert json.loads(emitter.events_of(ToolCall)[0].params) == {"query": "Query(q='x')", "n": 3}


def test_only_agent_events_are_emitted(emitter: InMemoryEmitter) -> None:
    with pytest.raises(ContractError, match="not Rollup"):
        emitter.emit(Rollup, scope="x")  # type: ignore[type-var]
    with pytest.raises(ContractError, match="needs an agent event"):
        emitter.emit("ToolCall")  # type: ignore[call-overload]


@pytest.mark.usefixtures("run")
def test_confluent_framing_through_the_same_pipeline(settings: Settings) -> None:
    registry = InMemorySchemaRegistry()
    emitter = InMemoryEmitter(settings, codec=AvroCodec("confluent", registry))
    with emitter.tool_call("x"):
        pass
    emitter.transition("INIT")
    values = [m.value for m in emitter.messages]
    assert all(v[0] == 0 for v in values)
    assert emitter.decoded() == emitter.events
    reader = AvroCodec(registry=registry)  # a consumer's codec: reads both framings
    assert reader.decode_model(values[0], ToolCall) == emitter.events[0]
