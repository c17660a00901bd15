"""Per-run context: the ids every event carries, set once per run.

``run_context(...)`` binds tenant / user / agent / run ids in a ``contextvars``
variable, so they follow the run across threads started with
``contextvars.copy_context()`` and across ``await``; the Emitter fills them
into each event. Trace and span ids come from the active OpenTelemetry span.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from opentelemetry import trace

__all__ = ["RunContext", "current_context", "current_trace", "run_context", "traceparent"]


@dataclass(frozen=True, slots=True)
class RunContext:
    """The ids of one agent run."""

    tenant_id: str
    agent_id: str
    run_id: str
    user_id: str = ""
    agent_version: str = ""


_CURRENT: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "agentstream_run", default=None
)


def current_context() -> RunContext | None:
    """The run bound in this context, if any."""
    return _CURRENT.get()


@contextmanager
def run_context(
    *,
    tenant_id: str | None = None,
    agent_id: str | None = None,
    run_id: str | None = None,
    user_id: str | None = None,
    agent_version: str | None = None,
) -> Iterator[RunContext]:
    """Bind a run's ids for the duration of the block (nested blocks override fields).

    ``run_id`` defaults to a fresh UUID when no outer run is bound.
    """
    outer = _CURRENT.get()
    if outer is None:
        if tenant_id is None or agent_id is None:
            from agentstream.errors import ContractError

            missing = "tenant_id" if tenant_id is None else "agent_id"
            raise ContractError(f"run_context: {missing} is required for a new run")
        ctx = RunContext(
            tenant_id=tenant_id,
            agent_id=agent_id,
            run_id=run_id or str(uuid.uuid4()),
            user_id=user_id or "",
            agent_version=agent_version or "",
        )
    else:
        changes = {
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
        ctx = replace(outer, **changes)
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def current_trace() -> tuple[str | None, str | None]:
    """``(trace_id, span_id)`` of the active OpenTelemetry span, as hex, or ``(None, None)``."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None, None
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


def traceparent(trace_id: str | None, span_id: str | None, sampled: bool = True) -> str | None:
    """The W3C ``traceparent`` header value for these ids (``None`` without a trace)."""
    if not trace_id or not span_id:
        return None
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"
