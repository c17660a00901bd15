"""Alert rules on rollups: the rule file, the metric catalogue, the evaluator.

* :func:`load_rules` / :func:`rules_from_settings` — read and validate a YAML rule
  file (default: the packaged ``default_rules.yaml``); problems raise
  :class:`~agentstream.core.errors.AlertRuleError` naming the rule id and the field;
* :data:`METRICS` — every metric a rule may watch;
* :func:`evaluate` — pure ``(rule, state, rollup) -> (new_state, alert | None)``;
  :class:`AlertEvaluator` runs a whole :class:`RuleSet` over a state store (the
  engine's changelogged dict) whose values are the JSON-safe dicts of :meth:`RuleState.to_dict`.

Example (inside the processors, on every closed rollup window)::

    evaluator = AlertEvaluator(rules_from_settings(settings), table)
    for alert in evaluator.process(rollup):
        await alerts_topic.send(key=alert.scope_key, value=encode_model(alert))
"""

from agentstream.processors.alerts._evaluator import (
    STATE_VERSION,
    AlertEvaluator,
    Evaluation,
    RuleState,
    Status,
    evaluate,
    expire,
    sample_alert,
    state_key,
)
from agentstream.processors.alerts._loader import (
    DEFAULT_RULES_FILE,
    known_channels,
    load_rules,
    parse_rules,
    rules_from_settings,
)
from agentstream.processors.alerts._metrics import (
    METRIC_ALIASES,
    METRICS,
    Metric,
    format_value,
    resolve_metric,
)
from agentstream.processors.alerts._rules import (
    BUILTIN_CHANNELS,
    Rule,
    RuleSet,
    ScopeFilter,
)

__all__ = [
    "BUILTIN_CHANNELS",
    "DEFAULT_RULES_FILE",
    "METRICS",
    "METRIC_ALIASES",
    "STATE_VERSION",
    "AlertEvaluator",
    "Evaluation",
    "Metric",
    "Rule",
    "RuleSet",
    "RuleState",
    "ScopeFilter",
    "Status",
    "evaluate",
    "expire",
    "format_value",
    "known_channels",
    "load_rules",
    "parse_rules",
    "resolve_metric",
    "rules_from_settings",
    "sample_alert",
    "state_key",
]
