"""Comparisons of two sides (agent versions or models) with significance, run in ClickHouse.

The unit of analysis is the **run**: a run's calls are correlated, so each run gives one
value (was it completed, did it err, was it overridden, what did it cost) or, for latency
percentiles, one group of latencies that the bootstrap draws whole. Side A is the baseline,
side B the candidate; every difference is ``B - A``.

Tests, by the kind of metric:

* rates (``completion_rate``, ``error_rate``, ``override_rate``, ``accuracy``): the
  two-proportion z-test with the unpooled standard error, ClickHouse's ``proportionsZTest``
  (its interval is the Wald interval of the difference);
* means (``cost_per_run``, ``cost_per_task``): Welch's t-test, ClickHouse's ``welchTTest``
  (Welch-Satterthwaite degrees of freedom, interval from the t distribution);
* percentiles (``p50_latency``, ``p95_latency``): a percentile bootstrap over runs
  (:func:`._stats.bootstrap_quantile_difference`), seeded from the settings.

Each comparison also carries its power calculation (:mod:`._stats`): the smallest difference
the sample can detect and, with ``mde``, the runs each side needs; too few gives a warning.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from agentstream.core.config import EvaluationSettings
from agentstream.core.errors import QueryRefused
from agentstream.sinks.clickhouse import QueryResult
from agentstream.sinks.evaluation import _stats

__all__ = [
    "BY",
    "METRICS",
    "Comparison",
    "Metric",
    "Population",
    "Querier",
    "Side",
    "compare",
]

Kind = Literal["proportion", "mean", "quantile"]


class Querier(Protocol):
    """What a comparison needs: checked read-only SQL (an analyst connection)."""

    def query(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...


@dataclass(frozen=True)
class Metric:
    """A metric: how it is tested, where its units come from and each unit's value."""

    name: str
    kind: Kind
    #: the deduplicated view the units come from
    table: str
    #: the value of one unit (an aggregate over the unit's rows); quantiles: ``groupArray``
    value: str
    #: which rows count (SQL over the table's columns), or ""
    rows: str
    #: what one unit is and what its value means (printed with the result)
    definition: str
    unit: str
    level: float = 0.0


METRICS: Mapping[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "completion_rate",
            "proportion",
            "state_transitions_dedup",
            "max(t.to_state = 'COMPLETED')",
            "t.to_state IN ('COMPLETED', 'FAILED')",
            "runs that ended (COMPLETED or FAILED) in the window; 1 when COMPLETED",
            "share",
        ),
        Metric(
            "error_rate",
            "proportion",
            "tool_calls_dedup",
            "max(t.status = 'ERROR')",
            "",
            "runs with tool calls in the window; 1 when any call ended in ERROR",
            "share",
        ),
        Metric(
            "override_rate",
            "proportion",
            "review_decisions_dedup",
            "argMax(t.decision, t.event_time) = 'OVERRIDDEN'",
            "",
            "reviewed runs in the window; 1 when the last decision is OVERRIDDEN",
            "share",
        ),
        Metric(
            "cost_per_run",
            "mean",
            "model_calls_dedup",
            "sum(t.cost_usd)",
            "",
            "runs with model calls in the window; their total model cost",
            "USD",
        ),
        Metric(
            "p95_latency",
            "quantile",
            "tool_calls_dedup",
            "groupArray(t.latency_ms)",
            "",
            "tool-call latency p95 pooled over the runs; the bootstrap draws whole runs",
            "ms",
            0.95,
        ),
    )
}

#: what a side can be: an agent version, or the model of a run (of its first model call)
BY = ("agent_version", "model")


@dataclass(frozen=True)
class Population:
    """Which units are compared: sides, time window, tenant, agent, extra row filters."""

    by: str
    a: str
    b: str
    since: dt.datetime
    until: dt.datetime | None = None
    tenant: str | None = None
    agent: str | None = None
    #: extra ``column = value`` filters on the metric's table (e.g. the benchmark suite)
    equals: Mapping[str, str] = field(default_factory=dict)
    #: the unit's key columns (default: the run)
    unit: tuple[str, ...] = ("tenant_id", "run_id")


@dataclass(frozen=True)
class Side:
    """One side: its label, its units and the metric's value over them."""

    label: str
    units: int
    value: float | None


@dataclass(frozen=True)
class Comparison:
    """Both sides, the difference B - A with its interval, the test, its p-value, power."""

    metric: str
    by: str
    a: Side
    b: Side
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float
    test: str
    statistic: float | None
    p_value: float | None
    power: _stats.PowerResult | None
    definition: str
    unit: str
    warnings: tuple[str, ...] = ()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _test_values(row: Any) -> tuple[float | None, float | None, float | None, float | None]:
    """(statistic, p-value, interval low, high) of a ClickHouse test's (named) tuple."""
    values = list(row.values()) if isinstance(row, Mapping) else list(row)
    if len(values) != 4:
        raise QueryRefused(f"unexpected test result {row!r}")
    statistic, p_value, low, high = (_finite(v) for v in values)
    return statistic, p_value, low, high


def _units_sql(metric: Metric, pop: Population, params: dict[str, Any]) -> str:
    """One row per unit: ``is_a`` (1: side A, 0: side B) and ``value``."""
    where = ["t.event_time >= {since:DateTime64(6, 'UTC')}"]
    params["since"] = pop.since
    params["a"], params["b"] = pop.a, pop.b
    if pop.until is not None:
        where.append("t.event_time < {until:DateTime64(6, 'UTC')}")
        params["until"] = pop.until
    if pop.tenant is not None:
        where.append("t.tenant_id = {tenant:String}")
        params["tenant"] = pop.tenant
    if pop.agent is not None:
        where.append("t.agent_id = {agent:String}")
        params["agent"] = pop.agent
    for n, (column, value) in enumerate(sorted(pop.equals.items())):
        if not column.isidentifier():
            raise QueryRefused(f"not a column: {column!r}")
        where.append(f"t.{column} = {{eq{n}:String}}")
        params[f"eq{n}"] = value
    if metric.rows:
        where.append(metric.rows)
    keys = ", ".join(f"t.{k}" for k in pop.unit)
    if pop.by == "agent_version":
        where.append("t.agent_version IN ({a:String}, {b:String})")
        return (
            f"SELECT {keys}, any(t.agent_version) = {{a:String}} AS is_a, "
            f"{metric.value} AS value FROM {metric.table} AS t "
            f"WHERE {' AND '.join(where)} GROUP BY {keys}"
        )
    if pop.by == "model":
        model_where = "event_time >= {since:DateTime64(6, 'UTC')}" + (
            " AND event_time < {until:DateTime64(6, 'UTC')}" if pop.until is not None else ""
        )
        where.append("m.model IN ({a:String}, {b:String})")
        return (
            f"SELECT {keys}, any(m.model) = {{a:String}} AS is_a, {metric.value} AS value "
            f"FROM {metric.table} AS t INNER JOIN (SELECT tenant_id, run_id, "
            f"argMin(model, event_time) AS model FROM model_calls_dedup WHERE {model_where} "
            "GROUP BY tenant_id, run_id) AS m ON t.tenant_id = m.tenant_id AND t.run_id = m.run_id "
            f"WHERE {' AND '.join(where)} GROUP BY {keys}"
        )
    raise QueryRefused(f"--by must be one of {', '.join(BY)}, not {pop.by!r}")


def compare(
    querier: Querier,
    metric: Metric,
    pop: Population,
    settings: EvaluationSettings,
    *,
    mde: float | None = None,
) -> Comparison:
    """Compare side B with side A on ``metric`` (see the module's notes for the tests)."""
    if pop.a == pop.b:
        raise QueryRefused("--a and --b must differ")
    if metric.kind == "proportion":
        return _proportions(querier, metric, pop, settings, mde)
    if metric.kind == "mean":
        return _means(querier, metric, pop, settings, mde)
    return _quantiles(querier, metric, pop, settings, mde)


def _power_warning(power: _stats.PowerResult, confidence: float, unit: str) -> list[str]:
    if not power.underpowered or power.mde is None:
        return []
    return [
        f"too few units to detect a difference of {power.mde:g} {unit} at "
        f"{confidence:.0%} confidence: {power.runs_have} on the smaller side, "
        f"{power.runs_needed} needed on each"
    ]


def _proportions(
    querier: Querier,
    metric: Metric,
    pop: Population,
    settings: EvaluationSettings,
    mde: float | None,
) -> Comparison:
    params: dict[str, Any] = {}
    units = _units_sql(metric, pop, params)
    counts = querier.query(
        "SELECT countIf(is_a) AS n_a, sumIf(value, is_a) AS x_a, "
        "countIf(NOT is_a) AS n_b, sumIf(value, NOT is_a) AS x_b "
        f"FROM ({units})",
        params,
    ).dicts()[0]
    n_a, x_a, n_b, x_b = (int(counts[k] or 0) for k in ("n_a", "x_a", "n_b", "x_b"))
    rate_a = x_a / n_a if n_a else None
    rate_b = x_b / n_b if n_b else None
    warnings: list[str] = []
    diff = lo = hi = z = p = None
    if n_a and n_b:
        # B first: ClickHouse's interval is for the first proportion minus the second
        row = querier.query(
            "SELECT proportionsZTest({x_b:UInt64}, {x_a:UInt64}, {n_b:UInt64}, {n_a:UInt64}, "
            f"{settings.confidence!r}, 'unpooled') AS test",
            {"x_a": x_a, "n_a": n_a, "x_b": x_b, "n_b": n_b},
        ).scalar()
        z, p, lo, hi = _test_values(row)
        diff = (rate_b or 0.0) - (rate_a or 0.0)
        if z is None:
            warnings.append("no variance on either side (all 0 or all 1): no test possible")
        low = settings.min_expected_count
        if min(x_a, n_a - x_a, x_b, n_b - x_b) < low:
            warnings.append(
                f"fewer than {low} successes or failures on a side: the normal "
                "approximation behind the z-test is unreliable"
            )
    else:
        warnings.append("a side has no units in the window: nothing to compare")
    power = _stats.proportion_power(
        rate_a if rate_a is not None else 0.0,
        n_a,
        n_b,
        mde,
        confidence=settings.confidence,
        power=settings.power,
    )
    warnings += _power_warning(power, settings.confidence, metric.unit)
    return Comparison(
        metric.name,
        pop.by,
        Side(pop.a, n_a, rate_a),
        Side(pop.b, n_b, rate_b),
        diff,
        lo,
        hi,
        settings.confidence,
        "two-proportion z-test, unpooled (ClickHouse proportionsZTest)",
        z,
        p,
        power,
        metric.definition,
        metric.unit,
        tuple(warnings),
    )


def _means(
    querier: Querier,
    metric: Metric,
    pop: Population,
    settings: EvaluationSettings,
    mde: float | None,
) -> Comparison:
    params: dict[str, Any] = {}
    units = _units_sql(metric, pop, params)
    confidence = float(settings.confidence)
    stats = querier.query(
        "SELECT countIf(is_a) AS n_a, avgIf(value, is_a) AS m_a, varSampIf(value, is_a) AS v_a, "
        "countIf(NOT is_a) AS n_b, avgIf(value, NOT is_a) AS m_b, "
        f"varSampIf(value, NOT is_a) AS v_b FROM ({units})",
        params,
    ).dicts()[0]
    n_a, n_b = int(stats["n_a"]), int(stats["n_b"])
    m_a = _finite(stats["m_a"]) if n_a else None
    m_b = _finite(stats["m_b"]) if n_b else None
    v_a = _finite(stats["v_a"]) or 0.0
    v_b = _finite(stats["v_b"]) or 0.0
    warnings: list[str] = []
    diff = lo = hi = t = p = None
    if n_a >= 2 and n_b >= 2:
        # is_a = 0 (side B) is ClickHouse's first sample: the interval is for mean(B) - mean(A)
        row = querier.query(
            f"SELECT welchTTest({confidence!r})(value, toUInt8(is_a)) AS test FROM ({units})",
            params,
        ).scalar()
        t, p, lo, hi = _test_values(row)
        diff = (m_b or 0.0) - (m_a or 0.0)
        if t is None:
            warnings.append("no variance on either side: no test possible")
    else:
        warnings.append("a side has fewer than 2 units: Welch's t-test needs 2 per side")
    power = _stats.mean_power(
        v_a, v_b, n_a, n_b, mde, confidence=settings.confidence, power=settings.power
    )
    warnings += _power_warning(power, settings.confidence, metric.unit)
    return Comparison(
        metric.name,
        pop.by,
        Side(pop.a, n_a, m_a),
        Side(pop.b, n_b, m_b),
        diff,
        lo,
        hi,
        settings.confidence,
        "Welch's t-test (ClickHouse welchTTest)",
        t,
        p,
        power,
        metric.definition,
        metric.unit,
        tuple(warnings),
    )


def _quantiles(
    querier: Querier,
    metric: Metric,
    pop: Population,
    settings: EvaluationSettings,
    mde: float | None,
) -> Comparison:
    params: dict[str, Any] = {}
    units = _units_sql(metric, pop, params)
    rows = querier.query(
        f"SELECT is_a, groupArray(value) AS runs FROM ({units}) GROUP BY is_a", params
    ).rows
    sides: dict[bool, list[list[float]]] = {bool(is_a): runs for is_a, runs in rows}
    a_runs = [[float(v) for v in run] for run in sides.get(True, [])]
    b_runs = [[float(v) for v in run] for run in sides.get(False, [])]
    n_a, n_b = len(a_runs), len(b_runs)
    label = f"p{round(metric.level * 100)}"
    if not n_a or not n_b:
        return Comparison(
            metric.name,
            pop.by,
            Side(pop.a, n_a, _point(a_runs, metric.level)),
            Side(pop.b, n_b, _point(b_runs, metric.level)),
            None,
            None,
            None,
            settings.confidence,
            f"percentile bootstrap of the {label} difference over runs",
            None,
            None,
            None,
            metric.definition,
            metric.unit,
            ("a side has no units in the window: nothing to compare",),
        )
    boot = _stats.bootstrap_quantile_difference(
        a_runs,
        b_runs,
        level=metric.level,
        confidence=settings.confidence,
        iterations=settings.bootstrap_iterations,
        seed=settings.bootstrap_seed,
    )
    power = _stats.detectable_from_se(
        boot.se, n_a, n_b, mde, confidence=settings.confidence, power=settings.power
    )
    warnings = _power_warning(power, settings.confidence, metric.unit)
    return Comparison(
        metric.name,
        pop.by,
        Side(pop.a, n_a, boot.a),
        Side(pop.b, n_b, boot.b),
        boot.difference,
        boot.ci_low,
        boot.ci_high,
        settings.confidence,
        f"percentile bootstrap of the {label} difference over runs "
        f"({boot.iterations} resamples, seed {settings.bootstrap_seed})",
        None,
        boot.p_value,
        power,
        metric.definition,
        metric.unit,
        tuple(warnings),
    )


def _point(runs: list[list[float]], level: float) -> float | None:
    values = sorted(v for run in runs for v in run)
    return _stats.quantile(values, level) if values else None
