"""What one event adds to the cells of its scopes (the rollups' hot path)."""

from __future__ import annotations

from typing import Final

from agentstream.processors.rollups._cells import (
    COST_NUSD,
    COUNT,
    ERROR,
    HANDOFFS,
    LATE,
    MODEL_CALLS,
    NANO,
    NON_RETRYABLE,
    OVERRIDES,
    PARTIAL,
    RETRYABLE,
    REVIEW_SCORE_SUM,
    REVIEWS,
    REVIEWS_APPROVED,
    REVIEWS_SCORED,
    RUNS_COMPLETED,
    RUNS_FAILED,
    RUNS_STARTED,
    SUCCESS,
    TIMEOUT,
    TOKENS_IN,
    TOKENS_OUT,
    VALUE_NUSD,
    ZERO_LATENCY,
    Cell,
)
from agentstream.schemas import (
    AgentState,
    CallStatus,
    Decision,
    ErrorClass,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
)

__all__ = ["add_model_call", "add_review", "add_tool_call", "add_transition"]

_STATUS: Final = {CallStatus.SUCCESS: SUCCESS, CallStatus.PARTIAL: PARTIAL, CallStatus.ERROR: ERROR}
_ERROR_CLASS: Final = {
    ErrorClass.NONE: -1,
    ErrorClass.RETRYABLE: RETRYABLE,
    ErrorClass.NON_RETRYABLE: NON_RETRYABLE,
    ErrorClass.TIMEOUT: TIMEOUT,
}
_RUN_END: Final = {
    AgentState.INIT: RUNS_STARTED,
    AgentState.COMPLETED: RUNS_COMPLETED,
    AgentState.FAILED: RUNS_FAILED,
}


def add_tool_call(ev: ToolCall, cells: list[Cell], late: bool, key: int | None) -> None:
    """A tool call; ``key``: its latency's sketch bin (None: zero latency)."""
    status = _STATUS[ev.status]
    error_class = _ERROR_CLASS[ev.error_class]
    for cell in cells:
        f = cell.f
        f[COUNT] += 1
        f[status] += 1
        f[LATE] += late
        if error_class >= 0:
            f[error_class] += 1
        if key is None:
            f[ZERO_LATENCY] += 1
        else:
            bins = cell.bins
            bins[key] = bins.get(key, 0) + 1


def add_model_call(ev: ModelCall, cells: list[Cell], late: bool) -> None:
    """A model call."""
    cost = round(ev.cost_usd * NANO)
    for cell in cells:
        f = cell.f
        f[MODEL_CALLS] += 1
        f[TOKENS_IN] += ev.input_tokens
        f[TOKENS_OUT] += ev.output_tokens
        f[COST_NUSD] += cost
        f[LATE] += late


def add_transition(ev: StateTransition, cells: list[Cell], late: bool) -> None:
    """A *validated* lifecycle transition (the lifecycle topic): runs and state time."""
    figure = _RUN_END.get(ev.to_state)
    dwell = ev.dwell_ms if ev.from_state is not None else None
    left = ev.from_state.value if ev.from_state is not None else ""
    handoff = int(figure == RUNS_STARTED and ev.parent_run_id is not None)
    value = round(ev.value_usd * NANO) if figure == RUNS_COMPLETED and ev.value_usd else 0
    for cell in cells:
        cell.f[LATE] += late
        if figure is not None:
            cell.f[figure] += 1
            cell.f[HANDOFFS] += handoff
            cell.f[VALUE_NUSD] += value
        if dwell:
            cell.state_ms[left] = cell.state_ms.get(left, 0) + dwell


def add_review(ev: ReviewDecision, cells: list[Cell], late: bool) -> None:
    """A review decision."""
    override = ev.decision is Decision.OVERRIDDEN
    approved = int(ev.decision is Decision.APPROVED)
    for cell in cells:
        cell.f[REVIEWS] += 1
        cell.f[LATE] += late
        if override:
            cell.f[OVERRIDES] += 1
        cell.f[REVIEWS_APPROVED] += approved
        if ev.score is not None:
            cell.f[REVIEW_SCORE_SUM] += ev.score
            cell.f[REVIEWS_SCORED] += 1
