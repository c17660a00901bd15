"""Per-run context: the ids every event carries, set once per run.

``run_context(...)`` binds tenant / user / agent / run ids in a ``contextvars``
variable, so they follow the run across ``await`` and into asyncio tasks, and
into threads started through ``contextvars.copy_context().run`` (or
``asyncio.to_thread``; a plain ``threading.Thread`` starts with an empty
context). The Emitter's helpers fill them into each event. Trace and span ids
come from the active OpenTelemetry span.

Defaults: ``user_id`` is :data:`DEFAULT_USER_ID` (``"anonymous"``) and
``agent_version`` :data:`DEFAULT_AGENT_VERSION` (``"unknown"``) when a run does
not name them; ``run_id`` is a fresh UUID. ``tenant_id`` and ``agent_id`` are
required.
"""

from __future__ import annotations

import contextvars
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from agentstream.schemas import AgentState

__all__ = [
    "DEFAULT_AGENT_VERSION",
    "DEFAULT_USER_ID",
    "RunContext",
    "RunStates",
    "active_span",
    "active_trace",
    "current_context",
    "current_trace",
    "run_context",
    "trace_of",
    "traceparent",
]

#: ``user_id`` of a run that names no user (the contract requires a non-empty id)
DEFAULT_USER_ID: Final = "anonymous"
#: ``agent_version`` of a run that names no version
DEFAULT_AGENT_VERSION: Final = "unknown"
#: longest id accepted (as in the contract)
_MAX_ID_CHARS: Final = 256


@dataclass(frozen=True, slots=True)
class RunContext:
    """The ids of one agent run."""

    tenant_id: str
    agent_id: str
    run_id: str
    user_id: str = DEFAULT_USER_ID
    agent_version: str = DEFAULT_AGENT_VERSION
    _fields: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = {
            "tenant_id": self.tenant_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "agent_version": self.agent_version,
            "run_id": self.run_id,
        }
        object.__setattr__(self, "_fields", ids)

    def fields(self) -> dict[str, str]:
        """The ids as event fields (a new dict)."""
        return self._fields.copy()


class RunStates:
    """Last state per run (LRU-bounded), so ``transition`` can fill ``from_state``; a run
    in one of the ``terminal`` states is forgotten."""

    def __init__(self, limit: int, terminal: frozenset[AgentState]) -> None:
        self._limit = limit
        self._terminal = terminal
        self._states: OrderedDict[str, AgentState] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, run_id: str) -> AgentState | None:
        return self._states.get(run_id)

    def set(self, run_id: str, state: AgentState) -> None:
        if state in self._terminal:
            self._states.pop(run_id, None)
            return
        self._states[run_id] = state
        self._states.move_to_end(run_id)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "agentstream_run", default=None
)

#: the bound run, or None (for the helpers' hot path)
current_context: Callable[[], RunContext | None] = _CURRENT.get


def _new_run_id() -> str:
    from agentstream.schemas import new_uuid

    return new_uuid()


def _contract_error(field: str, message: str) -> Exception:
    from agentstream.core.errors import ContractError

    return ContractError(f"run_context: {field}: {message}")


def _check_id(field: str, value: object) -> None:
    if not isinstance(value, str):
        raise _contract_error(field, f"must be a string, not {type(value).__name__}")
    if not value:
        raise _contract_error(field, "must not be empty")
    if len(value) > _MAX_ID_CHARS:
        raise _contract_error(field, f"longer than {_MAX_ID_CHARS} characters")


@contextmanager
def run_context(
    *,
    tenant_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    user_id: str | None = None,
    agent_version: str | None = None,
) -> Iterator[RunContext]:
    """Bind a run's ids for the duration of the block; yields the :class:`RunContext`.

    The outermost block must name ``tenant_id`` and ``agent_id``; ``run_id``
    defaults to a fresh UUID, ``user_id`` to ``"anonymous"`` and
    ``agent_version`` to ``"unknown"``. A nested block inherits the outer ids and
    overrides those it names (e.g. a sub-run with its own ``run_id``). Bad ids
    raise :class:`~agentstream.core.errors.ContractError` naming the field.
    """
    given: dict[str, Any] = {
        name: value
        for name, value in (
            ("tenant_id", tenant_id),
            ("agent_id", agent_id),
            ("run_id", run_id),
            ("user_id", user_id),
            ("agent_version", agent_version),
        )
        if value is not None
    }
    for name, value in given.items():
        _check_id(name, value)
    outer = _CURRENT.get()
    if outer is None:
        for required in ("tenant_id", "agent_id"):
            if required not in given:
                raise _contract_error(required, "required for a new run (no outer run_context)")
        given.setdefault("run_id", _new_run_id())
        ctx = RunContext(**given)
    else:
        ctx = replace(outer, **given)
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


_get_current_span: Callable[[], Any] | None = None
_invalid_span: Any = None


def active_span() -> Any:
    """The ``SpanContext`` of the active OpenTelemetry span, or None (none, or not valid).

    Its ids are formatted by :func:`trace_of` (a tool-call scope does it off the
    caller's thread).
    """
    global _get_current_span, _invalid_span
    if _get_current_span is None:
        from opentelemetry.trace import INVALID_SPAN, get_current_span

        _get_current_span, _invalid_span = get_current_span, INVALID_SPAN
    span = _get_current_span()
    if span is _invalid_span:  # no span (the common case without tracing): say so fast
        return None
    span_context = span.get_span_context()
    return span_context if span_context.is_valid else None


def trace_of(span_context: Any) -> tuple[str, str, bool]:
    """``(trace_id, span_id, sampled)`` of a ``SpanContext``, as hex."""
    return (
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
        bool(span_context.trace_flags & 0x01),
    )


def active_trace() -> tuple[str, str, bool] | None:
    """``(trace_id, span_id, sampled)`` of the active OpenTelemetry span, as hex, or None."""
    span_context = active_span()
    return None if span_context is None else trace_of(span_context)


def current_trace() -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` of the active OpenTelemetry span, as hex, or ``(None, None)``."""
    found = active_trace()
    if found is None:
        return None, None
    return found[0], found[1]


def traceparent(trace_id: str | None, span_id: str | None, sampled: bool = True) -> str | None:
    """The W3C ``traceparent`` header value for these ids (``None`` without a trace)."""
    if not trace_id or not span_id:
        return None
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
