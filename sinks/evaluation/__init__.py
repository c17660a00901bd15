"""Evaluation: comparisons with significance, the benchmark report, the business tier.

* :func:`compare` — two sides (agent versions or models) on a metric, run as the unit,
  with the engine's tests where they fit and a seeded bootstrap for percentiles;
* :func:`benchmark_report` — a suite's accuracy, p50/p95 latency and cost per task for a
  baseline and a candidate version, each difference with its significance;
* :data:`BUSINESS_SQL` — the daily business tier per agent (tasks, cost, value, ROI,
  satisfaction, hand-offs).
"""

from agentstream.sinks.evaluation._compare import (
    BY,
    METRICS,
    Comparison,
    Metric,
    Population,
    Querier,
    Side,
    compare,
)

__all__ = ["BY", "METRICS", "Comparison", "Metric", "Population", "Querier", "Side", "compare"]
