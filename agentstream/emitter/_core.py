"""What every emitter does before a message leaves: context, trace, redaction, encoding, size.

:class:`EmitterCore` holds the pipeline and the helpers (``tool_call``,
``traced``, ``transition``, ``model_call``, ``review``, ``eval_result``, ``feedback``);
subclasses decide where
an encoded message goes (:class:`~agentstream.Emitter`: Kafka;
:class:`~agentstream.testing.InMemoryEmitter`: a list).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, overload

from pydantic_core import to_json

from agentstream.core.catalog import AGENT_EVENTS
from agentstream.core.config import Settings
from agentstream.core.errors import ConfigError, ContractError, EventValidationError
from agentstream.core.redact import Redactor
from agentstream.emitter._callsite import Deferred
from agentstream.emitter._classify import classify_error
from agentstream.emitter._context import RunStates, active_trace, current_context
from agentstream.emitter._toolcall import ToolCallScope, ToolSpec
from agentstream.schemas import (
    AgentEvent,
    AgentState,
    AvroCodec,
    CallStatus,
    Decision,
    ErrorClass,
    EvalResult,
    Feedback,
    ModelCall,
    Retention,
    ReviewDecision,
    StateTransition,
)

__all__ = ["Classifier", "Deferred", "EmitterCore", "Headers"]

E = TypeVar("E", bound=AgentEvent)
F = TypeVar("F", bound=Callable[..., Any])
Headers = list[tuple[str, bytes]] | None
#: exception → (error class, error code); see :func:`agentstream.classify_error`
Classifier = Callable[[BaseException], tuple[ErrorClass, str]]


ID_FIELDS: Final = ("tenant_id", "user_id", "agent_id", "agent_version", "run_id")
_TERMINAL: Final = frozenset({AgentState.COMPLETED, AgentState.FAILED})
_TRACE_IDS: Final = re.compile(r"[0-9a-f]{32}-[0-9a-f]{16}")
#: tool specs remembered by ``tool_call`` (forgotten all at once beyond this)
_MAX_SPECS: Final = 4096


def _no_context(record: str, missing: list[str]) -> EventValidationError:
    return EventValidationError(
        record,
        [
            {
                "type": "missing",
                "loc": (name,),
                "msg": "Field required (no agentstream.run_context() is active)",
                "input": None,
            }
            for name in missing
        ],
    )


def _oversize(event: AgentEvent, size: int, limit: int) -> EventValidationError:
    texts = [(k, len(v)) for k, v in event.__dict__.items() if isinstance(v, str)]
    field, chars = max(texts, key=lambda item: item[1])
    return EventValidationError(
        event.avro_name,
        [
            {
                "type": "too_large",
                "loc": (field,),
                "msg": f"the encoded event is {size} bytes, over the {limit}-byte limit "
                f"(AGENTSTREAM_EMITTER__MAX_EVENT_BYTES); {field} is its largest field "
                f"({chars} characters)",
                "input": None,
            }
        ],
    )


class EmitterCore:
    """The event pipeline and the helpers; subclasses implement :meth:`_send`."""

    #: with an encoder thread: ``submit_deferred(job, size)`` queues a :class:`Deferred`
    #: (its free text ``size`` characters) whose event the thread builds; False when not
    #: taken (very large: the caller emits the fields itself); raises DeliveryError once
    #: closed. None: no encoder thread (the caller emits the fields).
    submit_deferred: Callable[[Deferred, int], bool] | None = None

    def __init__(
        self,
        settings: Settings,
        *,
        codec: AvroCodec,
        redactor: Redactor | bool | None = True,
        classify: Classifier | None = None,
    ) -> None:
        es = settings.emitter
        self.settings = settings
        self.codec = codec
        if redactor is True:
            redactor = self._redactor_from(settings) if es.redact else None
        self.redactor: Redactor | None = redactor or None
        self._max_bytes = es.max_event_bytes
        self._topics = {cls: s.topic(settings.topics) for cls, s in AGENT_EVENTS.items()}
        self.classify: Classifier = classify or classify_error
        self._runs = RunStates(es.max_tracked_runs, _TERMINAL)
        self._specs: dict[tuple[Any, ...], ToolSpec] = {}

    @staticmethod
    def _redactor_from(settings: Settings) -> Redactor:
        es = settings.emitter
        try:
            return Redactor(
                es.redact_kinds,
                es.redact_patterns,
                phone_region=es.redact_phone_region,
                phone_leniency=es.redact_phone_leniency,
            )
        except ValueError as exc:
            raise ConfigError(f"AGENTSTREAM_EMITTER__REDACT_KINDS / _PATTERNS: {exc}") from exc

    def topic_for(self, event_type: type[AgentEvent]) -> str:
        """The topic events of ``event_type`` go to."""
        try:
            return self._topics[event_type]
        except KeyError:
            names = ", ".join(cls.__name__ for cls in AGENT_EVENTS)
            raise ContractError(
                f"the Emitter sends agent events ({names}), not {event_type.__name__}"
            ) from None

    # -- the pipeline ------------------------------------------------------------------------

    @overload
    def emit(self, event: E, /) -> E: ...

    @overload
    def emit(self, event: type[E], /, **fields: Any) -> E: ...

    def emit(self, event: E | type[E], /, **fields: Any) -> E:
        """Validate, redact, encode and enqueue one event; returns the event as sent.

        ``emit(ToolCall(...))`` sends a built event; ``emit(ToolCall, tool=..., ...)``
        builds it first, taking the ids from the active :func:`run_context` (fields
        given win). Trace ids come from the active OpenTelemetry span when the event
        has none. Never blocks on the network. Raises :class:`EventValidationError`
        naming the field for bad values, a missing run id or an oversize event.
        """
        if isinstance(event, type):
            self.topic_for(event)
            data, sampled = self.context_fields(event.avro_name, fields)
            return self.emit_data(event, data, sampled)
        if fields:
            raise TypeError("emit(event) takes no fields; use emit(EventClass, **fields)")
        if not isinstance(event, AgentEvent):
            raise ContractError(f"emit() needs an agent event, not {type(event).__name__}")
        self.topic_for(type(event))
        sampled = True
        if event.trace_id is None:
            trace = active_trace()
            if trace is not None:
                event = event.model_copy(update={"trace_id": trace[0], "span_id": trace[1]})
                sampled = trace[2]
        return self.emit_built(event, sampled)

    def emit_built(self, event: E, sampled: bool = True) -> E:
        """Redact a built event (validating it again if that changed it) and dispatch it."""
        return self.dispatch(self.completed(type(event), event), sampled)

    def completed(self, event_type: type[E], data: dict[str, Any] | E) -> E:
        """The event as sent: ``data``'s free text redacted, validated into ``event_type``.

        ``data`` is the fields (redacted in place) or a built event (validated again
        only when redaction changed it).
        """
        if isinstance(data, AgentEvent):
            if self.redactor is not None:
                changes = self._redacted(event_type, data.__dict__)
                if changes:
                    return event_type.model_validate({**data.__dict__, **changes})
            return data
        if self.redactor is not None:
            data.update(self._redacted(event_type, data))
        return event_type(**data)

    def context_fields(
        self, record: str, fields: Mapping[str, Any] | None, run_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """``fields`` plus the run's ids and the active trace; and the trace's sampled flag."""
        ctx = current_context()
        if ctx is not None:
            data = ctx.fields()
            if fields:
                data.update(fields)
        else:
            data = dict(fields or ())
        if run_id is not None:
            data["run_id"] = run_id
        missing = [name for name in ID_FIELDS if data.get(name) is None]
        if missing:
            raise _no_context(record, missing)
        sampled = True
        if data.get("trace_id") is None:
            trace = active_trace()
            if trace is not None:
                data["trace_id"], data["span_id"], sampled = trace
        return data, sampled

    def no_run_context(self, record: str, run_id: str | None) -> EventValidationError:
        """The error of a helper used outside any :func:`run_context` (names the ids)."""
        return _no_context(record, [n for n in ID_FIELDS if n != "run_id" or run_id is None])

    def _redacted(self, event_type: type[AgentEvent], data: Mapping[str, Any]) -> dict[str, Any]:
        """The free-text fields of ``data`` that redaction changes, redacted, and the
        ``redactions`` counts (kind -> replacements) when anything was replaced."""
        redactor = self.redactor
        changes: dict[str, Any] = {}
        if redactor is None:
            return changes
        texts: list[tuple[str, str]] = []
        for name in AGENT_EVENTS[event_type].free_text:
            value = data.get(name)
            if name == "params" and value is not None and not isinstance(value, str):
                # serialised first: then clean params cost one scan, like clean text
                value = to_json(value, fallback=repr, inf_nan_mode="null").decode()
                changes[name] = value
            if isinstance(value, str) and value:
                texts.append((name, value))
        if not texts:
            return changes
        probe = texts[0][1] if len(texts) == 1 else "\n".join([text for _, text in texts])
        if not redactor.may_match(probe):  # the common case: nothing to do
            return changes
        counts: dict[str, int] = {}
        for name, value in texts:
            new = (
                redactor.json_text(value, counts)
                if name == "params"
                else redactor.text(value, counts)
            )
            if new != value:
                changes[name] = new
        if counts:
            previous = data.get("redactions") or {}
            for kind, n in previous.items():
                counts[kind] = counts.get(kind, 0) + n
            changes["redactions"] = counts
        return changes

    def emit_data(
        self,
        event_type: type[E],
        data: dict[str, Any],
        sampled: bool = True,
        trusted: frozenset[str] = frozenset(),
    ) -> E:
        """Redact ``data``'s free text, build the event (validating it) and dispatch it.

        ``trusted``: fields the emitter made valid itself (a hint for the call-site
        check of the encoder thread; the full validation checks every field).
        """
        return self.dispatch(self.completed(event_type, data), sampled)

    def encoded(self, event: AgentEvent, sampled: bool = True) -> tuple[str, bytes, bytes, Headers]:
        """Topic, key, Avro value (size checked) and headers of a validated, redacted event."""
        value = self.codec.encode_model(event)
        if len(value) > self._max_bytes:
            raise _oversize(event, len(value), self._max_bytes)
        headers: Headers = None
        trace_id, span_id = event.trace_id, event.span_id
        if trace_id is not None and span_id is not None:
            ids = f"{trace_id}-{span_id}"
            if _TRACE_IDS.fullmatch(ids):
                flags = "01" if sampled else "00"
                headers = [("traceparent", f"00-{ids}-{flags}".encode())]
        return self._topics[type(event)], event.run_id.encode(), value, headers

    def dispatch(self, event: E, sampled: bool = True) -> E:
        """Encode a validated, redacted event, check its size and hand it to :meth:`_send`."""
        topic, key, value, headers = self.encoded(event, sampled)
        self._send(topic, key, value, headers, event)
        return event

    def _send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, event: AgentEvent
    ) -> None:
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------

    def tool_call(
        self,
        tool: str,
        *,
        params: Any = None,
        timeout_ms: float | None = None,
        attempt: int = 1,
        idempotent: bool = False,
        atomic: bool = False,
        retention: Retention | str = Retention.BUSINESS,
        run_id: str | None = None,
    ) -> ToolCallScope:
        """A scope around one tool call: ``with``, ``async with``, or a decorator.

        It measures the latency, turns an exception into status ERROR with an
        error class and code (see :func:`~agentstream.classify_error`) and
        re-raises it; inside, set ``result_summary``, ``output_valid``,
        ``fallback_used``, ``status = "PARTIAL"`` or call ``fail(...)`` on the scope.
        ``params`` (a dict, list or JSON text) is redacted before it leaves.
        """
        key = (tool, timeout_ms, attempt, idempotent, atomic, retention)
        spec = self._specs.get(key)
        if spec is None:
            if len(self._specs) >= _MAX_SPECS:
                self._specs.clear()
            spec = self._specs[key] = ToolSpec(*key)
        return ToolCallScope(self, spec, params, run_id)

    def traced(
        self,
        tool: str | None = None,
        *,
        timeout_ms: float | None = None,
        idempotent: bool = False,
        atomic: bool = False,
        retention: Retention | str = Retention.BUSINESS,
    ) -> Callable[[F], F]:
        """Decorator: every call of the (sync or async) function is one tool call.

        ``tool`` defaults to the function's name. Inside the function,
        :func:`~agentstream.current_tool_call` returns the scope.
        """

        def decorate(fn: F) -> F:
            name = tool or getattr(fn, "__name__", None) or "tool"
            spec = ToolSpec(name, timeout_ms, 1, idempotent, atomic, retention)
            return ToolCallScope(self, spec)(fn)

        return decorate

    def transition(
        self,
        to_state: AgentState | str,
        *,
        from_state: AgentState | str | None = None,
        reason: str | None = None,
        error_category: str | None = None,
        run_id: str | None = None,
        retention: Retention | str = Retention.BUSINESS,
        parent_run_id: str | None = None,
        handoff_from_agent: str | None = None,
        value_usd: float | None = None,
    ) -> StateTransition:
        """The run moved to ``to_state``; ``from_state`` defaults to the run's last state.

        The emitter remembers each run's last state (until COMPLETED/FAILED), so a
        run's first transition has ``from_state`` None and later ones are filled in.
        A run that receives a task from another agent (a hand-off) names the handing
        run in ``parent_run_id`` (and its agent in ``handoff_from_agent``) on its INIT;
        ``value_usd`` is the business value of a COMPLETED run.
        """
        fields: dict[str, Any] = {"to_state": to_state, "retention": retention}
        if reason is not None:
            fields["reason"] = reason
        if error_category is not None:
            fields["error_category"] = error_category
        if parent_run_id is not None:
            fields["parent_run_id"] = parent_run_id
        if handoff_from_agent is not None:
            fields["handoff_from_agent"] = handoff_from_agent
        if value_usd is not None:
            fields["value_usd"] = value_usd
        data, sampled = self.context_fields("StateTransition", fields, run_id)
        run = data["run_id"]
        with self._runs.lock:
            data["from_state"] = from_state if from_state is not None else self._runs.get(run)
            event = self.emit_data(StateTransition, data, sampled)
            self._runs.set(run, event.to_state)
        return event

    def model_call(
        self,
        model: str,
        provider: str,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float,
        latency_ms: float,
        *,
        status: CallStatus | str = CallStatus.SUCCESS,
        error_class: ErrorClass | str = ErrorClass.NONE,
        error_code: str | None = None,
        retention: Retention | str = Retention.BUSINESS,
        run_id: str | None = None,
    ) -> ModelCall:
        """One language-model call: tokens, cost and latency."""
        fields: dict[str, Any] = {
            "model": model,
            "provider": provider,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cost_usd": cost_usd,
            "latency_ms": latency_ms,
            "status": status,
            "error_class": error_class,
            "error_code": error_code,
            "retention": retention,
        }
        data, sampled = self.context_fields("ModelCall", fields, run_id)
        return self.emit_data(ModelCall, data, sampled)

    def review(
        self,
        reviewer: str,
        decision: Decision | str,
        comment: str | None = None,
        *,
        score: int | None = None,
        retention: Retention | str = Retention.BUSINESS,
        run_id: str | None = None,
    ) -> ReviewDecision:
        """A human reviewed the run: APPROVED, REJECTED or OVERRIDDEN, with an optional
        quality ``score`` from 1 to 5."""
        fields: dict[str, Any] = {
            "reviewer": reviewer,
            "decision": decision,
            "comment": comment,
            "score": score,
            "retention": retention,
        }
        data, sampled = self.context_fields("ReviewDecision", fields, run_id)
        return self.emit_data(ReviewDecision, data, sampled)

    def eval_result(
        self,
        suite: str,
        task_id: str,
        *,
        correct: bool,
        latency_ms: float,
        cost_usd: float = 0.0,
        expected: str | None = None,
        got: str | None = None,
        retention: Retention | str = Retention.BUSINESS,
        run_id: str | None = None,
    ) -> EvalResult:
        """One benchmark task of ``suite`` run by this agent version (pre-deployment)."""
        fields: dict[str, Any] = {
            "suite": suite,
            "task_id": task_id,
            "expected": expected,
            "got": got,
            "correct": correct,
            "latency_ms": latency_ms,
            "cost_usd": cost_usd,
            "retention": retention,
        }
        data, sampled = self.context_fields("EvalResult", fields, run_id)
        return self.emit_data(EvalResult, data, sampled)

    def feedback(
        self,
        satisfaction: int,
        comment: str | None = None,
        *,
        retention: Retention | str = Retention.BUSINESS,
        run_id: str | None = None,
    ) -> Feedback:
        """The end user rated the run: ``satisfaction`` 1 (worst) to 5 (best)."""
        fields: dict[str, Any] = {
            "satisfaction": satisfaction,
            "comment": comment,
            "retention": retention,
        }
        data, sampled = self.context_fields("Feedback", fields, run_id)
        return self.emit_data(Feedback, data, sampled)
