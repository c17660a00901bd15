"""Rollouts with verdicts (issue #16): candidate versus baseline per stage, on the rollups.

* :func:`parse_guards` / :class:`Guard` — ``"error_rate <= +1pp"``, ``"p95_latency <= +10%"``;
* :mod:`._bounds` — Wilson and Newcombe intervals, sketch-based quantile bounds;
* :func:`latest` — which rollout record is current (the judge and ``rollout status``);
* :class:`RolloutJudge` — pure: rollouts + rollups → PROMOTE / HOLD / ROLLBACK decisions;
* :class:`RolloutStage` — the Kafka shell (rollouts + rollups in; verdicts, states, alerts
  out, transactionally).
"""

from agentstream.processors.rollouts._bounds import newcombe, quantile_bounds, two_sided_z, wilson
from agentstream.processors.rollouts._guards import (
    METRICS,
    Guard,
    Metric,
    parse_guard,
    parse_guards,
)
from agentstream.processors.rollouts._judge import (
    VERDICT_NAMESPACE,
    Decision,
    RolloutJudge,
    judge_stage,
)
from agentstream.processors.rollouts._latest import latest, supersedes
from agentstream.processors.rollouts._stage import RolloutStage, verdict_alert

__all__ = [
    "METRICS",
    "VERDICT_NAMESPACE",
    "Decision",
    "Guard",
    "Metric",
    "RolloutJudge",
    "RolloutStage",
    "judge_stage",
    "latest",
    "newcombe",
    "parse_guard",
    "parse_guards",
    "quantile_bounds",
    "supersedes",
    "two_sided_z",
    "verdict_alert",
    "wilson",
]
