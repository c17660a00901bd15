"""The :class:`~schemas.Rollup` record of one cell, and window arithmetic."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from agentstream.processors._clock import from_us
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
from agentstream.processors.rollups._sketch import LatencySketch
from agentstream.schemas import (
    RESOLUTION_SECONDS,
    RESOLUTIONS,
    AgentState,
    Resolution,
    Rollup,
    utc_now,
)

__all__ = ["QUANTILES", "RESOLUTION_US", "TIERS", "build_rollup", "window_start"]

#: window length of each resolution, in microseconds
RESOLUTION_US: Final[dict[Resolution, int]] = {
    r: seconds * 1_000_000 for r, seconds in RESOLUTION_SECONDS.items()
}
#: the resolutions, finest first
TIERS: Final[tuple[Resolution, ...]] = RESOLUTIONS
#: the quantiles reported as latency_p50 / p95 / p99
QUANTILES: Final = (0.5, 0.95, 0.99)


def window_start(us: int, resolution: Resolution) -> int:
    """Start (µs) of the ``resolution`` window holding instant ``us``."""
    return us - us % RESOLUTION_US[resolution]


def build_rollup(
    resolution: Resolution,
    start_us: int,
    cell: Cell,
    relative_accuracy: float,
    computed_at: datetime | None = None,
) -> Rollup:
    """The :class:`~schemas.Rollup` record of a closed cell."""
    f = cell.f
    sketch = LatencySketch.wrap(relative_accuracy, cell.bins, f[ZERO_LATENCY])
    p50 = p95 = p99 = None
    data = None
    if sketch.bins or sketch.zero:
        p50, p95, p99 = sketch.quantiles(QUANTILES)
        data = sketch.to_bytes()
    scope = cell.scope
    return Rollup(
        resolution=resolution,
        window_start=from_us(start_us),
        window_end=from_us(start_us + RESOLUTION_US[resolution]),
        scope_kind=scope.kind,
        scope_key=scope.key,
        tenant_id=scope.tenant_id,
        agent_id=scope.agent_id,
        agent_version=scope.agent_version,
        tool=scope.tool,
        count=f[COUNT],
        success=f[SUCCESS],
        partial=f[PARTIAL],
        error=f[ERROR],
        retryable=f[RETRYABLE],
        non_retryable=f[NON_RETRYABLE],
        timeout=f[TIMEOUT],
        late_events=f[LATE],
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        latency_sketch=data,
        tokens_in=f[TOKENS_IN],
        tokens_out=f[TOKENS_OUT],
        cost_usd=f[COST_NUSD] / NANO,
        model_calls=f[MODEL_CALLS],
        runs_started=f[RUNS_STARTED],
        runs_completed=f[RUNS_COMPLETED],
        runs_failed=f[RUNS_FAILED],
        reviews=f[REVIEWS],
        overrides=f[OVERRIDES],
        reviews_approved=f[REVIEWS_APPROVED],
        review_score_sum=f[REVIEW_SCORE_SUM],
        reviews_scored=f[REVIEWS_SCORED],
        state_time_ms={AgentState(s): ms for s, ms in sorted(cell.state_ms.items())},
        computed_at=computed_at or utc_now(),
        redactions=dict(sorted(cell.redactions.items())),
        handoffs=f[HANDOFFS],
        value_usd=f[VALUE_NUSD] / NANO,
    )
