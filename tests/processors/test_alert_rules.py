"""The alert rule file: defaults, shorthands, and refusal of malformed files naming rule + field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentstream.core.config import AlertChannelSettings, AlertSettings, load_settings
from agentstream.core.durations import parse_duration
from agentstream.core.errors import AlertRuleError, ConfigError
from agentstream.processors.alerts import (
    METRICS,
    Rule,
    known_channels,
    load_rules,
    parse_rules,
    rules_from_settings,
)
from agentstream.schemas import Rollup, ScopeKind, Severity

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def _rule(**fields: Any) -> dict[str, Any]:
    return {"id": "r1", "metric": "error_rate", "threshold": 0.05, **fields}


def _refused(data: Any, **kwargs: Any) -> AlertRuleError:
    with pytest.raises(AlertRuleError) as info:
        parse_rules(data, "rules.yaml", **kwargs)
    return info.value


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def _rollup(kind: ScopeKind, key: str, **fields: Any) -> Rollup:
    return Rollup(
        resolution="1m",
        window_start=T0,
        window_end=T0 + timedelta(minutes=1),
        scope_kind=kind,
        scope_key=key,
        **fields,
    )


# -- the packaged defaults -----------------------------------------------------------------


def test_packaged_defaults_are_the_seed_rules() -> None:
    rules = load_rules()
    by_id = {r.id: r for r in rules}
    assert set(by_id) == {"agent-error-rate", "tool-error-rate", "agent-p95-latency"}
    for rule_id, per in (("agent-error-rate", "agent"), ("tool-error-rate", "tool")):
        rule = by_id[rule_id]
        assert (rule.metric, rule.comparator, rule.threshold) == ("error_rate", ">", 0.05)
        assert (rule.scope.per, rule.resolution) == (per, "1m")
    p95 = by_id["agent-p95-latency"]
    assert (p95.metric, p95.threshold, p95.resolution) == ("p95_latency_ms", 10_000.0, "1m")
    for rule in rules:
        assert rule.min_samples >= 10  # one failing call out of one never pages
        assert rule.cooldown_s > 0
        assert "log" in rule.channels


def test_rules_from_settings_uses_the_configured_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "rules:\n  - {id: mine, metric: count, threshold: 1}\n")
    settings = load_settings(alerts={"rules_path": path})
    assert [r.id for r in rules_from_settings(settings)] == ["mine"]
    assert len(rules_from_settings(load_settings())) == 3  # unset: the packaged file


# -- what a valid file may say -------------------------------------------------------------


def test_defaults_block_applies_unless_the_rule_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
defaults:
  min_samples: 50
  cooldown: 10m
  channels: [log, webhook]
  severity: critical
rules:
  - id: a
    metric: error_rate
    threshold: 5%
  - id: b
    metric: latency_p99
    threshold: 2.5s
    cooldown: 90
    severity: info
    for: 3
""",
    )
    rules = load_rules(path)
    a, b = rules["a"], rules["b"]
    assert (a.min_samples, a.cooldown_s, a.channels) == (50, 600.0, ("log", "webhook"))
    assert a.threshold == pytest.approx(0.05)
    assert a.severity == Severity.CRITICAL
    assert b.metric == "p99_latency_ms"  # alias → canonical
    assert b.threshold == 2500.0
    assert (b.cooldown_s, b.severity, b.for_windows) == (90.0, Severity.INFO, 3)


def test_scope_shorthand_and_filters() -> None:
    rules = parse_rules(
        {
            "rules": [
                _rule(id="tools", scope="per tool"),
                _rule(
                    id="acme",
                    scope={"per": "agent", "tenant": "acme", "agent": "plan*", "version": 1.4},
                ),
            ]
        }
    )
    tools, acme = rules["tools"], rules["acme"]
    assert tools.scope.scope_kind == ScopeKind.TOOL
    assert tools.matches(_rollup(ScopeKind.TOOL, "tool=search", tool="search"))
    assert not tools.matches(_rollup(ScopeKind.AGENT, "agent=x", agent_id="x"))
    agent = {"agent_id": "planner", "agent_version": "1.4"}
    assert acme.matches(_rollup(ScopeKind.AGENT, "a", tenant_id="acme", **agent))
    assert not acme.matches(_rollup(ScopeKind.AGENT, "a", tenant_id="other", **agent))
    assert not acme.matches(_rollup(ScopeKind.AGENT, "a", **agent))  # no tenant on the rollup
    assert not acme.matches(
        _rollup(ScopeKind.AGENT, "a", tenant_id="acme", agent_id="coder", agent_version="1.4")
    )


def test_every_metric_computes_on_a_rollup() -> None:
    rollup = _rollup(
        ScopeKind.AGENT,
        "a",
        count=200,
        success=180,
        error=20,
        retryable=10,
        timeout=4,
        latency_p95=12_000.0,
        runs_completed=9,
        runs_failed=1,
        reviews=4,
        overrides=1,
        cost_usd=3.0,
        model_calls=30,
        tokens_in=1000,
        tokens_out=500,
    )
    expected = {
        "error_rate": 0.1,
        "retryable_error_rate": 0.05,
        "timeout_rate": 0.02,
        "success_rate": 0.9,
        "p95_latency_ms": 12_000.0,
        "completion_rate": 0.9,
        "human_override_rate": 0.25,
        "cost_per_min": 3.0,
        "tokens": 1500.0,
        "count": 200.0,
    }
    for name, value in expected.items():
        assert METRICS[name].value(rollup) == pytest.approx(value), name
    assert METRICS["human_override_rate"].samples(rollup) == 4
    assert METRICS["completion_rate"].samples(rollup) == 10
    assert METRICS["p50_latency_ms"].value(rollup) is None  # not measured
    empty = _rollup(ScopeKind.AGENT, "a")
    assert METRICS["error_rate"].value(empty) is None  # 0/0 is no data, not 0 %


def test_durations() -> None:
    assert [parse_duration(v) for v in ("90s", "5m", "1h", "250ms", 30, "1d")] == [
        90.0,
        300.0,
        3600.0,
        0.25,
        30.0,
        86400.0,
    ]
    for bad in ("5 minutes", "-1s", True, "m"):
        with pytest.raises(ValueError):
            parse_duration(bad)


# -- malformed files are refused with the rule id and the field ----------------------------


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        (_rule(metric="eror_rate"), "metric", "unknown metric 'eror_rate'"),
        (_rule(threshold=5), "threshold", "between 0 and 1"),
        (_rule(threshold="lots"), "threshold", "valid number"),
        (_rule(comparator="=>"), "comparator", "'>'"),
        (_rule(**{"for": 0}), "for", "greater than or equal to 1"),
        (_rule(min_samples=-1), "min_samples", "greater than or equal to 0"),
        (_rule(cooldown="5 minutes"), "cooldown", "duration"),
        (_rule(resolution="5m"), "resolution", "'1s', '1m', '1h' or '1d'"),
        (_rule(severity="urgent"), "severity", "CRITICAL"),
        (_rule(scope="per galaxy"), "scope.per", "'tool'"),
        (_rule(scope={"per": "global", "tool": "x"}), "scope", "global rollups"),
        (_rule(scope={"per": "tool", "tools": "x"}), "scope.tools", "unknown field"),
        (_rule(treshold=0.1), "treshold", "unknown field"),
        (_rule(channels=[]), "channels", "at least 1"),
        (_rule(channels=["log", "bad name!"]), "channels[1]", "pattern"),
        (_rule(id="has space"), "id", "pattern"),
    ],
)
def test_bad_field_is_named(rule: dict[str, Any], field: str, words: str) -> None:
    error = _refused({"rules": [rule]})
    assert len(error.problems) == 1, error.problems
    rule_id, got_field, message = error.problems[0]
    assert rule_id == rule["id"]
    assert got_field == field
    assert words in message
    assert str(error).startswith("rules.yaml: ")
    assert f"rule {rule['id']!r}: {field}: " in str(error)


def test_missing_fields_and_id_less_rules_are_numbered() -> None:
    error = _refused({"rules": [_rule(), {"metric": "count"}]})
    assert ("#2", "id", "Field required") in error.problems
    assert ("#2", "threshold", "Field required") in error.problems
    assert not any(p[0] == "r1" for p in error.problems)


def test_every_problem_of_the_file_is_reported_at_once() -> None:
    error = _refused(
        {"rules": [_rule(id="a", metric="nope"), _rule(id="b", cooldown="x"), _rule(id="c")]}
    )
    assert [(p[0], p[1]) for p in error.problems] == [("a", "metric"), ("b", "cooldown")]
    assert isinstance(error, ConfigError)  # the CLI prints it as one line


def test_duplicate_ids_unknown_channels_and_resolutions() -> None:
    error = _refused(
        {"rules": [_rule(id="x"), _rule(id="x", channels=["pager"], resolution="1s")]},
        known_channels={"log"},
        resolutions=("1m",),
    )
    assert error.problems == [("x", "id", "duplicate id (also rule #1)")]
    error = _refused(
        {"rules": [_rule(id="y", channels=["log", "pager"], resolution="1s")]},
        known_channels={"log"},
        resolutions=("1m",),
    )
    assert [(p[0], p[1]) for p in error.problems] == [("y", "channels"), ("y", "resolution")]
    assert "unknown channel 'pager'; known: log" in str(error)


def test_file_level_problems() -> None:
    assert "must be a mapping" in str(_refused(["a"]))
    error = _refused({"rulez": [], "defaults": []})
    fields = {p[1] for p in error.problems}
    assert fields == {"rulez", "defaults", "rules"}


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    dup = _write(tmp_path, "rules:\n  - id: a\n    metric: count\n    metric: error\n")
    with pytest.raises(AlertRuleError, match=r"line 4, column 5: duplicate key 'metric'"):
        load_rules(dup)
    broken = _write(tmp_path, "rules: [\n")
    with pytest.raises(AlertRuleError, match=r"rules\.yaml: file: not valid YAML at line 2"):
        load_rules(broken)
    with pytest.raises(AlertRuleError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_known_channels_are_builtins_plus_configured() -> None:
    settings = AlertSettings(channels={"oncall": AlertChannelSettings(kind="log")})
    assert known_channels(settings) == {"log", "stdout", "webhook", "slack", "oncall"}


def test_rule_is_hashable_and_frozen() -> None:
    rule = Rule.model_validate(_rule())
    with pytest.raises(ValueError):
        rule.threshold = 1.0  # type: ignore[misc]
