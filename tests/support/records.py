"""One record factory for the suite: a run context and each contract record with
plain defaults; every keyword overrides a field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agentstream.schemas import (
    Alert,
    EvalResult,
    Feedback,
    InvalidEvent,
    ModelCall,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
)

__all__ = [
    "CONTEXT",
    "alert",
    "context",
    "eval_result",
    "feedback",
    "invalid_event",
    "model_call",
    "review",
    "rollup",
    "tool_call",
    "transition",
    "window",
]

#: the ids every agent event carries
CONTEXT: dict[str, Any] = {
    "tenant_id": "acme",
    "user_id": "user-1",
    "agent_id": "planner",
    "agent_version": "1.4.0",
    "run_id": "run-42",
}


def context(**overrides: Any) -> dict[str, Any]:
    """The run context, with ``overrides``."""
    return {**CONTEXT, **overrides}


def window(start: datetime | None = None, minutes: int = 1) -> dict[str, datetime]:
    """``window_start`` / ``window_end`` of a window beginning at ``start``."""
    begin = start or datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    return {"window_start": begin, "window_end": begin + timedelta(minutes=minutes)}


def tool_call(**overrides: Any) -> ToolCall:
    return ToolCall(
        **{**CONTEXT, "tool": "search", "status": "SUCCESS", "latency_ms": 12.5, **overrides}
    )


def model_call(**overrides: Any) -> ModelCall:
    fields = {"model": "gpt-4o", "provider": "openai", "input_tokens": 10, "output_tokens": 5}
    return ModelCall(**{**CONTEXT, **fields, "cost_usd": 0.01, "latency_ms": 80.0, **overrides})


def transition(**overrides: Any) -> StateTransition:
    return StateTransition(**{**CONTEXT, "to_state": "INIT", **overrides})


def review(**overrides: Any) -> ReviewDecision:
    return ReviewDecision(**{**CONTEXT, "reviewer": "alice", "decision": "APPROVED", **overrides})


def invalid_event(**overrides: Any) -> InvalidEvent:
    fields: dict[str, Any] = {
        "source_topic": "agent.tool_calls",
        "partition": 0,
        "offset": 1,
        "key": b"run-42",
        "raw": b"\x00",
        "reason": "cannot decode",
        "error_type": "CodecError",
        "run_id": "run-42",
    }
    return InvalidEvent(**{**fields, **overrides})


def rollup(**overrides: Any) -> Rollup:
    fields: dict[str, Any] = {"resolution": "1m", "scope_kind": "GLOBAL", "scope_key": "global"}
    return Rollup(**{**fields, **window(), **overrides})


def alert(**overrides: Any) -> Alert:
    fields: dict[str, Any] = {
        "rule_id": "error-rate",
        "state": "FIRING",
        "severity": "CRITICAL",
        "scope_key": "global",
        "metric": "error_rate",
        "value": 0.08,
        "threshold": 0.05,
        "comparator": ">",
        "resolution": "1m",
        "message": "error rate 8% > 5%",
        "channels": ("log", "webhook"),
    }
    return Alert(**{**fields, **window(), **overrides})


def eval_result(**overrides: Any) -> EvalResult:
    fields = {"suite": "smoke", "task_id": "t-1", "correct": True, "latency_ms": 120.0}
    return EvalResult(**{**CONTEXT, **fields, **overrides})


def feedback(**overrides: Any) -> Feedback:
    return Feedback(**{**CONTEXT, "satisfaction": 4, **overrides})
