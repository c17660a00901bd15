"""Rollout guards: ``"error_rate <= +1pp"``, ``"p95_latency <= +10%"``, parsed into a typed
:class:`Guard`, and the metrics they may name.

A guard compares the candidate with the baseline: ``pp`` is an absolute difference in
percentage points (rates only), ``%`` a relative one (``candidate <= baseline * 1.10``).
``<=`` guards a metric that must not rise too much, ``>=`` one that must not fall too much
(``completion_rate >= -1pp``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from agentstream.core.errors import ConfigError
from agentstream.schemas import Rollup

__all__ = ["METRICS", "Guard", "Metric", "parse_guard", "parse_guards"]


@dataclass(frozen=True)
class Metric:
    """A figure a guard may name: a rate (numerator / denominator of rollup figures) or a
    latency quantile (from the merged latency sketches)."""

    name: str
    kind: Literal["rate", "quantile"]
    description: str
    numerator: Callable[[Rollup], int] | None = None
    denominator: Callable[[Rollup], int] | None = None
    quantile: float | None = None


def _ended(r: Rollup) -> int:
    return r.runs_completed + r.runs_failed


def _calls(r: Rollup) -> int:
    return r.count


def _reviews(r: Rollup) -> int:
    return r.reviews


def _rate(
    name: str, description: str, num: Callable[[Rollup], int], den: Callable[[Rollup], int]
) -> Metric:
    return Metric(name, "rate", description, num, den)


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        _rate("error_rate", "tool calls with status ERROR", lambda r: r.error, _calls),
        _rate("timeout_rate", "tool calls that timed out", lambda r: r.timeout, _calls),
        _rate("run_failure_rate", "ended runs that FAILED", lambda r: r.runs_failed, _ended),
        _rate("completion_rate", "ended runs that COMPLETED", lambda r: r.runs_completed, _ended),
        _rate("override_rate", "reviews OVERRIDDEN", lambda r: r.overrides, _reviews),
        Metric("p50_latency", "quantile", "median tool-call latency", quantile=0.50),
        Metric("p95_latency", "quantile", "p95 tool-call latency", quantile=0.95),
        Metric("p99_latency", "quantile", "p99 tool-call latency", quantile=0.99),
    )
}

_GUARD = re.compile(
    r"^\s*(?P<metric>[a-z0-9_]+)\s*(?P<op><=|>=)\s*(?P<amount>[+-]?\d+(?:\.\d+)?)\s*(?P<unit>pp|%)\s*$"
)


@dataclass(frozen=True)
class Guard:
    """``metric op amount unit``: how far the candidate may be from the baseline."""

    metric: Metric
    op: Literal["<=", ">="]
    amount: float
    unit: Literal["pp", "%"]
    text: str

    def __str__(self) -> str:
        return self.text


def parse_guard(text: str, field: str = "guard") -> Guard:
    """One guard; :class:`ConfigError` names ``field`` and what is wrong."""
    match = _GUARD.match(text)
    if match is None:
        raise ConfigError(
            f"{field}: cannot read {text!r}; expected METRIC <=|>= [+|-]NUMBER pp|% "
            "(e.g. 'error_rate <= +1pp', 'p95_latency <= +10%')"
        )
    metric = METRICS.get(match["metric"])
    if metric is None:
        raise ConfigError(
            f"{field}: unknown metric {match['metric']!r}; known: {', '.join(METRICS)}"
        )
    unit: Literal["pp", "%"] = "pp" if match["unit"] == "pp" else "%"
    if unit == "pp" and metric.kind != "rate":
        raise ConfigError(f"{field}: {metric.name} is not a rate: use % (e.g. +10%)")
    op: Literal["<=", ">="] = "<=" if match["op"] == "<=" else ">="
    amount = float(match["amount"])
    if unit == "%" and amount <= -100:
        raise ConfigError(f"{field}: a relative change must be above -100%")
    canonical = f"{metric.name} {op} {amount:+g}{unit}"
    return Guard(metric, op, amount, unit, canonical)


def parse_guards(texts: Sequence[str], field: str = "guards") -> tuple[Guard, ...]:
    """Every guard (at least one); errors name ``field[i]``."""
    if not texts:
        raise ConfigError(f"{field}: at least one guard is needed")
    return tuple(parse_guard(t, f"{field}[{i}]") for i, t in enumerate(texts))
