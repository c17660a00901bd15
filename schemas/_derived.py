"""Records the processors produce: dead letters, rollups and alerts.

Each model mirrors the Avro schema of the same name (``schemas/<Name>.avsc``)
field for field; the Avro file is the source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal, Self

from pydantic import Field, model_validator

from agentstream.schemas._base import (
    INT32_MAX,
    INT64_MAX,
    Code,
    Count,
    FiniteFloat,
    Id,
    Name,
    NonNegativeFloat,
    RawBytes,
    Record,
    Redactions,
    Text,
    UtcDatetime,
    UuidText,
    new_uuid,
    utc_now,
)
from agentstream.schemas._enums import AgentState, AlertState, ScopeKind, Severity

__all__ = [
    "RESOLUTIONS",
    "RESOLUTION_SECONDS",
    "Alert",
    "Comparator",
    "InvalidEvent",
    "Resolution",
    "Rollup",
]

#: rollup window lengths: THE definition of the resolution set (everything else derives
#: from ``Resolution`` / :data:`RESOLUTION_SECONDS`)
Resolution = Literal["1s", "1m", "1h", "1d"]
#: the length of each resolution's window in seconds, finest first
RESOLUTION_SECONDS: Final[Mapping[Resolution, int]] = MappingProxyType(
    {"1s": 1, "1m": 60, "1h": 3_600, "1d": 86_400}
)
#: every resolution, finest first
RESOLUTIONS: Final[tuple[Resolution, ...]] = tuple(RESOLUTION_SECONDS)
#: how an alert rule compares a metric with its threshold
Comparator = Literal[">", ">=", "<", "<=", "==", "!="]


class InvalidEvent(Record):
    """A dead letter: the original bytes, where they came from, and why they were refused."""

    avro_name = "InvalidEvent"

    invalid_id: UuidText = Field(default_factory=new_uuid)
    detected_time: UtcDatetime = Field(default_factory=utc_now)
    source_topic: Name
    partition: int = Field(ge=0, le=INT32_MAX)
    offset: int = Field(ge=0, le=INT64_MAX)
    key: RawBytes | None = None
    raw: RawBytes
    reason: Text = Field(min_length=1)
    error_type: Name
    run_id: Id | None = None
    tenant_id: Id | None = None
    event_id: Id | None = None


class Rollup(Record):
    """Figures of one scope over one tumbling event-time window.

    ``latency_sketch`` is the serialized mergeable sketch the percentiles come
    from, so a 1 m rollup merges its 1 s rollups exactly. ``state_time_ms`` maps
    an :class:`AgentState` to the milliseconds spent in it.
    """

    avro_name = "Rollup"

    resolution: Resolution
    window_start: UtcDatetime
    window_end: UtcDatetime
    scope_kind: ScopeKind
    scope_key: Name
    tenant_id: Id | None = None
    agent_id: Id | None = None
    agent_version: Id | None = None
    tool: Name | None = None
    count: Count = 0
    success: Count = 0
    partial: Count = 0
    error: Count = 0
    retryable: Count = 0
    non_retryable: Count = 0
    timeout: Count = 0
    late_events: Count = 0
    latency_p50: NonNegativeFloat | None = None
    latency_p95: NonNegativeFloat | None = None
    latency_p99: NonNegativeFloat | None = None
    latency_sketch: RawBytes | None = None
    tokens_in: Count = 0
    tokens_out: Count = 0
    cost_usd: NonNegativeFloat = 0.0
    model_calls: Count = 0
    runs_started: Count = 0
    runs_completed: Count = 0
    runs_failed: Count = 0
    reviews: Count = 0
    overrides: Count = 0
    reviews_approved: Count = 0
    review_score_sum: Count = 0
    reviews_scored: Count = 0
    state_time_ms: dict[AgentState, Count] = Field(default_factory=dict)
    computed_at: UtcDatetime = Field(default_factory=utc_now)
    redactions: Redactions = Field(default_factory=dict)
    handoffs: Count = 0
    value_usd: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class Alert(Record):
    """An alert rule changed state (FIRING or RESOLVED)."""

    avro_name = "Alert"

    alert_id: UuidText = Field(default_factory=new_uuid)
    rule_id: Id
    state: AlertState
    severity: Severity
    scope_key: Name
    metric: Name
    value: FiniteFloat
    threshold: FiniteFloat
    comparator: Comparator
    resolution: Resolution
    window_start: UtcDatetime
    window_end: UtcDatetime
    fired_at: UtcDatetime = Field(default_factory=utc_now)
    message: Text
    channels: tuple[Code, ...] = ()

    @model_validator(mode="after")
    def _window(self) -> Self:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self
