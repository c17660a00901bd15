"""Records of the evaluation loop the processors and the CLI write: review requests,
rollouts (definition and state) and rollout verdicts.

Each model mirrors the Avro schema of the same name (``schemas/<Name>.avsc``)
field for field; the Avro file is the source of truth.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, Self

from pydantic import Field, model_validator

from agentstream.schemas._base import (
    Code,
    Count,
    Count32,
    FiniteFloat,
    Id,
    Name,
    NonNegativeFloat,
    Record,
    Text,
    UtcDatetime,
    UuidText,
    new_uuid,
    utc_now,
)

__all__ = [
    "ReviewRequest",
    "Rollout",
    "RolloutStatus",
    "RolloutVerdict",
    "VerdictKind",
]

#: where a rollout stands
RolloutStatus = Literal["ACTIVE", "COMPLETED", "ROLLED_BACK", "ABORTED"]
#: what a stage's judgement says
VerdictKind = Literal["PROMOTE", "HOLD", "ROLLBACK"]


class ReviewRequest(Record):
    """A finished run picked for human review: sampled by its run id's hash, or by a rule."""

    avro_name = "ReviewRequest"

    request_id: UuidText
    requested_at: UtcDatetime
    tenant_id: Id
    agent_id: Id
    agent_version: Id
    run_id: Id
    outcome: Literal["COMPLETED", "FAILED"]
    error_category: Code | None = None
    reason: Name
    sample_rate: float = Field(ge=0, le=1, allow_inf_nan=False)
    hash_fraction: float = Field(ge=0, lt=1, allow_inf_nan=False)


class Rollout(Record):
    """A rollout's definition and where it stands (latest value per agent on the topic).

    ``stages`` are the candidate's traffic percents, strictly increasing, ending at 100;
    blue-green is ``(0, 100)``.
    """

    avro_name = "Rollout"

    rollout_id: UuidText = Field(default_factory=new_uuid)
    agent_id: Id
    baseline: Id
    candidate: Id
    stages: tuple[Count32, ...]
    min_stage_s: NonNegativeFloat
    guards: tuple[Text, ...]
    min_runs: Count
    status: RolloutStatus = "ACTIVE"
    stage_index: Count32 = 0
    stage_started_at: UtcDatetime = Field(default_factory=utc_now)
    created_at: UtcDatetime = Field(default_factory=utc_now)
    updated_at: UtcDatetime = Field(default_factory=utc_now)
    created_by: Id
    reason: Text | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        stages = self.stages
        if len(stages) < 2:
            raise ValueError("stages: at least two (e.g. 0,100 for blue-green)")
        if any(not 0 <= s <= 100 for s in stages):
            raise ValueError("stages: each a percent from 0 to 100")
        if any(b <= a for a, b in pairwise(stages)):
            raise ValueError("stages: must increase")
        if stages[-1] != 100:
            raise ValueError("stages: the last stage must be 100")
        if self.stage_index >= len(stages):
            raise ValueError("stage_index: past the last stage")
        if self.baseline == self.candidate:
            raise ValueError("candidate: must differ from the baseline")
        return self

    @property
    def percent(self) -> int:
        """The candidate's traffic percent in the current stage."""
        return self.stages[self.stage_index]


class RolloutVerdict(Record):
    """A verdict on one stage of a rollout, with the stage's figures (``metrics``)."""

    avro_name = "RolloutVerdict"

    verdict_id: UuidText = Field(default_factory=new_uuid)
    rollout_id: UuidText
    agent_id: Id
    baseline: Id
    candidate: Id
    verdict: VerdictKind
    stage_index: Count32
    stage_percent: Count32
    next_percent: Count32 | None = None
    reason: Text
    decided_at: UtcDatetime = Field(default_factory=utc_now)
    stage_started_at: UtcDatetime
    manual: bool = False
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
