"""Evaluation: comparisons with significance, the benchmark report, the business tier.

* :func:`compare` — two sides (agent versions or models) on a metric, run as the unit,
  with the engine's tests where they fit and a seeded bootstrap for percentiles;
* :func:`benchmark_report` — a suite's accuracy, p50/p95 latency and cost per task for a
  baseline and a candidate version, each difference with its significance;

The daily business tier is a canned report (``agentstream report business``, in
:mod:`agentstream.sinks.analyst`).
"""

from agentstream.sinks.evaluation._benchmark import BENCHMARK_METRICS, benchmark_report
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

__all__ = [
    "BENCHMARK_METRICS",
    "BY",
    "METRICS",
    "Comparison",
    "Metric",
    "Population",
    "Querier",
    "Side",
    "benchmark_report",
    "compare",
]
