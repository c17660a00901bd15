"""The pre-deployment benchmark report: a suite's results for a baseline and a candidate
version, each figure compared with :func:`._compare.compare` (same tests, same power
calculation). The unit is one task attempt (one ``EvalResult``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from agentstream.core.config import EvaluationSettings
from agentstream.sinks.evaluation._compare import Comparison, Metric, Population, Querier, compare

__all__ = ["BENCHMARK_METRICS", "benchmark_report"]

_TABLE = "eval_results_dedup"
_UNIT = "one task attempt of the suite (an EvalResult)"

#: the benchmark's figures, in report order
BENCHMARK_METRICS: tuple[Metric, ...] = (
    Metric(
        "accuracy",
        "proportion",
        _TABLE,
        "max(toUInt8(t.correct))",
        "",
        f"{_UNIT}; 1 when correct",
        "share",
    ),
    Metric(
        "p50_latency",
        "quantile",
        _TABLE,
        "groupArray(t.latency_ms)",
        "",
        f"{_UNIT}; its latency",
        "ms",
        0.5,
    ),
    Metric(
        "p95_latency",
        "quantile",
        _TABLE,
        "groupArray(t.latency_ms)",
        "",
        f"{_UNIT}; its latency",
        "ms",
        0.95,
    ),
    Metric(
        "cost_per_task",
        "mean",
        _TABLE,
        "sum(t.cost_usd)",
        "",
        f"{_UNIT}; its cost",
        "USD",
    ),
)


def benchmark_report(
    querier: Querier,
    settings: EvaluationSettings,
    *,
    suite: str,
    baseline: str,
    candidate: str,
    since: dt.datetime,
    until: dt.datetime | None = None,
    tenant: str | None = None,
    agent: str | None = None,
    mde: Mapping[str, float] | None = None,
) -> list[Comparison]:
    """Accuracy, p50/p95 latency and cost per task of ``candidate`` against ``baseline``."""
    pop = Population(
        "agent_version",
        baseline,
        candidate,
        since,
        until,
        tenant,
        agent,
        equals={"suite": suite},
        unit=("tenant_id", "event_id"),
    )
    wanted = mde or {}
    return [
        compare(querier, metric, pop, settings, mde=wanted.get(metric.name))
        for metric in BENCHMARK_METRICS
    ]
