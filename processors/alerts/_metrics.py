"""The metric catalogue: every figure or ratio an alert rule may watch on a :class:`Rollup`.

A :class:`Metric` turns a rollup into a value (``None``: not defined for this
window, e.g. a ratio without a denominator) and a *sample count*, the number
of events the value is made of, which rules compare with ``min_samples``:

* ratios: their denominator (``error_rate`` → tool calls, ``human_override_rate``
  → reviews, ``completion_rate`` → runs that ended);
* latency percentiles: tool calls;
* raw figures and per-minute rates: the events they count (tool calls, model
  calls, runs or reviews).

Ratios are fractions (0.05 is 5 %); latencies are milliseconds; costs US dollars.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agentstream.schemas import Rollup

__all__ = ["METRICS", "METRIC_ALIASES", "Metric", "Unit", "format_value", "resolve_metric"]

#: how a metric's values are shown (and, for ``ratio``, which thresholds make sense)
Unit = Literal["ratio", "ms", "count", "usd", "usd_per_min", "per_min"]

_Value = Callable[[Rollup], float | None]
_Samples = Callable[[Rollup], int]


@dataclass(frozen=True, slots=True)
class Metric:
    """A figure an alert rule can watch."""

    name: str
    unit: Unit
    description: str
    value: _Value
    samples: _Samples
    #: what the sample count counts, for messages ("calls", "reviews", ...)
    sample_noun: str


def _ratio(num: Callable[[Rollup], int], den: Callable[[Rollup], int]) -> _Value:
    def value(r: Rollup) -> float | None:
        d = den(r)
        return num(r) / d if d > 0 else None

    return value


def _minutes(r: Rollup) -> float:
    return (r.window_end - r.window_start).total_seconds() / 60.0


def _per_min(figure: Callable[[Rollup], float]) -> _Value:
    return lambda r: figure(r) / _minutes(r)


def _calls(r: Rollup) -> int:
    return r.count


def _model_calls(r: Rollup) -> int:
    return r.model_calls


def _ended_runs(r: Rollup) -> int:
    return r.runs_completed + r.runs_failed


def _runs(r: Rollup) -> int:
    return r.runs_started + r.runs_completed + r.runs_failed


def _reviews(r: Rollup) -> int:
    return r.reviews


def _tokens(r: Rollup) -> int:
    return r.tokens_in + r.tokens_out


def _call_ratio(name: str, field: str, what: str) -> Metric:
    return Metric(
        name,
        "ratio",
        f"tool calls {what} / tool calls",
        _ratio(lambda r: int(getattr(r, field)), _calls),
        _calls,
        "calls",
    )


def _figure(name: str, unit: Unit, description: str, samples: _Samples, noun: str) -> Metric:
    return Metric(name, unit, description, lambda r: float(getattr(r, name)), samples, noun)


def _latency(q: str) -> Metric:
    field = f"latency_{q}"
    return Metric(
        f"{q}_latency_ms",
        "ms",
        f"{q} tool-call latency (ms)",
        lambda r: getattr(r, field),
        _calls,
        "calls",
    )


_CATALOGUE: tuple[Metric, ...] = (
    _call_ratio("error_rate", "error", "with status ERROR"),
    _call_ratio("retryable_error_rate", "retryable", "failed RETRYABLE"),
    _call_ratio("non_retryable_error_rate", "non_retryable", "failed NON_RETRYABLE"),
    _call_ratio("timeout_rate", "timeout", "failed TIMEOUT"),
    _call_ratio("success_rate", "success", "with status SUCCESS"),
    _call_ratio("partial_rate", "partial", "with status PARTIAL"),
    _latency("p50"),
    _latency("p95"),
    _latency("p99"),
    Metric(
        "completion_rate",
        "ratio",
        "runs COMPLETED / runs that ended (COMPLETED + FAILED)",
        _ratio(lambda r: r.runs_completed, _ended_runs),
        _ended_runs,
        "ended runs",
    ),
    Metric(
        "run_failure_rate",
        "ratio",
        "runs FAILED / runs that ended (COMPLETED + FAILED)",
        _ratio(lambda r: r.runs_failed, _ended_runs),
        _ended_runs,
        "ended runs",
    ),
    Metric(
        "human_override_rate",
        "ratio",
        "review decisions OVERRIDDEN / review decisions",
        _ratio(lambda r: r.overrides, _reviews),
        _reviews,
        "reviews",
    ),
    Metric(
        "cost_per_min",
        "usd_per_min",
        "model cost per minute of the window (USD)",
        _per_min(lambda r: r.cost_usd),
        _model_calls,
        "model calls",
    ),
    Metric(
        "tokens",
        "count",
        "model tokens in + out",
        lambda r: float(_tokens(r)),
        _model_calls,
        "model calls",
    ),
    Metric(
        "tokens_per_min",
        "per_min",
        "model tokens (in + out) per minute of the window",
        _per_min(lambda r: float(_tokens(r))),
        _model_calls,
        "model calls",
    ),
    Metric(
        "calls_per_min",
        "per_min",
        "tool calls per minute of the window",
        _per_min(lambda r: float(r.count)),
        _calls,
        "calls",
    ),
    _figure("cost_usd", "usd", "model cost (USD)", _model_calls, "model calls"),
    _figure("tokens_in", "count", "model input tokens", _model_calls, "model calls"),
    _figure("tokens_out", "count", "model output tokens", _model_calls, "model calls"),
    _figure("model_calls", "count", "model calls", _model_calls, "model calls"),
    _figure("count", "count", "tool calls", _calls, "calls"),
    *(
        _figure(name, "count", f"tool calls: {name}", _calls, "calls")
        for name in ("success", "partial", "error", "retryable", "non_retryable", "timeout")
    ),
    _figure("late_events", "count", "events that arrived after the window closed", _calls, "calls"),
    *(
        _figure(name, "count", f"runs: {name}", _runs, "runs")
        for name in ("runs_started", "runs_completed", "runs_failed")
    ),
    _figure("reviews", "count", "review decisions", _reviews, "reviews"),
    _figure("overrides", "count", "review decisions OVERRIDDEN", _reviews, "reviews"),
)

#: every metric by canonical name
METRICS: dict[str, Metric] = {m.name: m for m in _CATALOGUE}

#: other accepted spellings (the Rollup field names) → canonical name
METRIC_ALIASES: dict[str, str] = {
    "latency_p50": "p50_latency_ms",
    "latency_p95": "p95_latency_ms",
    "latency_p99": "p99_latency_ms",
    "override_rate": "human_override_rate",
    "calls": "count",
}


def resolve_metric(name: str) -> Metric:
    """The metric called ``name`` (canonical or alias); ``KeyError`` if unknown."""
    return METRICS[METRIC_ALIASES.get(name, name)]


def format_value(metric: Metric, value: float) -> str:
    """``value`` for people: ``5.0%``, ``10,000 ms``, ``$1.25``, ``1,234``."""
    if metric.unit == "ratio":
        return f"{value * 100:.4g}%"
    if metric.unit == "ms":
        return f"{value:,.0f} ms"
    if metric.unit == "usd":
        return f"${value:,.4g}"
    if metric.unit == "usd_per_min":
        return f"${value:,.4g}/min"
    if metric.unit == "per_min":
        return f"{value:,.4g}/min"
    return f"{value:,.10g}"
