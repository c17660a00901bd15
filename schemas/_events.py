"""The events agents emit: tool calls, model calls, state transitions, reviews,
benchmark results and end-user feedback.

Each model mirrors the Avro schema of the same name (``schemas/<Name>.avsc``)
field for field; the Avro file is the source of truth.
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from agentstream.schemas._base import (
    INT32_MAX,
    AgentEvent,
    Code,
    Count,
    Id,
    Name,
    NonNegativeFloat,
    ParamsJson,
    PositiveFloat,
    Redactions,
    Summary,
    Text,
)
from agentstream.schemas._enums import AgentState, CallStatus, Decision, ErrorClass, Retention

__all__ = [
    "MAX_REVIEW_SCORE",
    "EvalResult",
    "Feedback",
    "ModelCall",
    "ReviewDecision",
    "StateTransition",
    "ToolCall",
]


#: the highest review score (scores run from 1, poor, to this, excellent)
MAX_REVIEW_SCORE = 5


def _score_in_range(score: int) -> int:
    if score > MAX_REVIEW_SCORE:
        raise ValueError(f"a review score runs from 1 to {MAX_REVIEW_SCORE}, not {score}")
    return score


#: a review score: an Avro int (so bounded like one), 1 to MAX_REVIEW_SCORE
ReviewScore = Annotated[int, Field(ge=1, le=INT32_MAX), AfterValidator(_score_in_range)]


def _check_outcome(status: CallStatus, error_class: ErrorClass) -> None:
    if status is CallStatus.SUCCESS and error_class is not ErrorClass.NONE:
        raise ValueError(f"status SUCCESS requires error_class NONE, not {error_class.value}")
    if status is CallStatus.ERROR and error_class is ErrorClass.NONE:
        raise ValueError("status ERROR requires an error_class other than NONE")


class ToolCall(AgentEvent):
    """One call (one attempt) of a tool by an agent.

    ``attempt`` is 1-based: 1 is the first try, 2 the first retry. ``params`` is
    redacted JSON text; a dict or list is serialised to compact JSON for you.
    ``status`` SUCCESS requires ``error_class`` NONE and ERROR requires another class.
    """

    avro_name = "ToolCall"

    tool: Name
    status: CallStatus
    error_class: ErrorClass = ErrorClass.NONE
    error_code: Code | None = None
    latency_ms: NonNegativeFloat
    timeout_ms: PositiveFloat | None = None
    attempt: int = Field(default=1, ge=1, le=INT32_MAX)
    fallback_used: bool = False
    output_valid: bool = True
    idempotent: bool = False
    atomic: bool = False
    retention: Retention = Retention.BUSINESS
    params: ParamsJson = "{}"
    result_summary: Summary | None = None
    redactions: Redactions = Field(default_factory=dict)

    @model_validator(mode="after")
    def _outcome(self) -> Self:
        _check_outcome(self.status, self.error_class)
        return self


class ModelCall(AgentEvent):
    """One call of a language model: tokens, cost and latency.

    ``status`` SUCCESS requires ``error_class`` NONE and ERROR requires another class.
    """

    avro_name = "ModelCall"

    model: Name
    provider: Name
    input_tokens: Count = 0
    output_tokens: Count = 0
    cost_usd: NonNegativeFloat = 0.0
    latency_ms: NonNegativeFloat
    status: CallStatus
    error_class: ErrorClass = ErrorClass.NONE
    error_code: Code | None = None
    retention: Retention = Retention.BUSINESS
    redactions: Redactions = Field(default_factory=dict)

    @model_validator(mode="after")
    def _outcome(self) -> Self:
        _check_outcome(self.status, self.error_class)
        return self


class StateTransition(AgentEvent):
    """A run moved from ``from_state`` (None for its first event) to ``to_state``.

    Whether the move is allowed is the processor's business (lifecycle rules), not
    the contract's; ``dwell_ms`` is filled in by the processor and ``synthesized``
    marks transitions the processor emitted itself (e.g. a TIMEOUT failure).

    A hand-off (one agent passes a task to the next) is a run whose transitions carry
    ``parent_run_id`` (the handing run) and ``handoff_from_agent``; the rollups count
    one hand-off per receiving run, at its INIT. ``value_usd`` is the business value of
    the task, meaningful on COMPLETED (ROI = value / cost).
    """

    avro_name = "StateTransition"

    from_state: AgentState | None = None
    to_state: AgentState
    reason: Text | None = None
    error_category: Code | None = None
    dwell_ms: Count | None = None
    synthesized: bool = False
    retention: Retention = Retention.BUSINESS
    redactions: Redactions = Field(default_factory=dict)
    parent_run_id: Id | None = None
    handoff_from_agent: Id | None = None
    value_usd: NonNegativeFloat | None = None


class ReviewDecision(AgentEvent):
    """A human reviewed a run: APPROVED, REJECTED or OVERRIDDEN (human override).

    ``score`` (v3) is the reviewer's quality score, 1 to 5; None when not given.
    """

    avro_name = "ReviewDecision"

    reviewer: Id
    decision: Decision
    comment: Text | None = None
    score: ReviewScore | None = None
    retention: Retention = Retention.BUSINESS
    redactions: Redactions = Field(default_factory=dict)


class EvalResult(AgentEvent):
    """One task of a pre-deployment benchmark ``suite``, run by one agent version.

    ``expected`` and ``got`` are free text (redacted); ``correct`` is the judgement.
    """

    avro_name = "EvalResult"

    suite: Name
    task_id: Id
    expected: Text | None = None
    got: Text | None = None
    correct: bool
    latency_ms: NonNegativeFloat
    cost_usd: NonNegativeFloat = 0.0
    retention: Retention = Retention.BUSINESS
    redactions: Redactions = Field(default_factory=dict)


class Feedback(AgentEvent):
    """An end user rated a run: ``satisfaction`` 1 (worst) to 5 (best), optional comment."""

    avro_name = "Feedback"

    #: the reviewers' scale: 1 (worst) to MAX_REVIEW_SCORE (best)
    satisfaction: ReviewScore
    comment: Text | None = None
    retention: Retention = Retention.BUSINESS
    redactions: Redactions = Field(default_factory=dict)
