"""`compare` on a populated engine: every figure against a reference computed here, from the
generated events, with scipy (the package never imports scipy)."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from agentstream.core.config import ClickHouseSettings, EvaluationSettings, load_settings
from agentstream.core.errors import QueryRefused
from agentstream.schemas import ModelCall, Record, ReviewDecision, StateTransition, ToolCall
from agentstream.sinks import Position
from agentstream.sinks.analyst import AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate, open_backend
from agentstream.sinks.evaluation import METRICS, Comparison, Population, compare

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SINCE = NOW - dt.timedelta(hours=6)
SETTINGS = EvaluationSettings()
Z = stats.norm.ppf(1 - (1 - SETTINGS.confidence) / 2)
Z_POWER = stats.norm.ppf(SETTINGS.power)


class Truth:
    """Generated runs of versions 1.0 (A) and 2.0 (B); per-run truth kept beside them."""

    def __init__(self, seed: int = 11) -> None:
        rnd = random.Random(seed)
        self.records: list[Record] = []
        #: (by, side) -> run -> value, per metric
        self.completed: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.errored: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.overridden: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.cost: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.latencies: dict[tuple[str, str], list[list[float]]] = defaultdict(list)
        for n in range(700):
            version = "1.0" if n % 7 < 4 else "2.0"
            old = n % 50 == 0  # before --since: must not count
            when = (
                SINCE - dt.timedelta(seconds=rnd.uniform(60, 3600))
                if old
                else NOW - dt.timedelta(seconds=rnd.uniform(60, 5 * 3600))
            )
            self._run(rnd, f"run-{n}", version, when, old)

    def _run(
        self, rnd: random.Random, run: str, version: str, when: dt.datetime, old: bool
    ) -> None:
        ctx: dict[str, Any] = {
            "tenant_id": "acme",
            "user_id": "u",
            "agent_id": "planner",
            "agent_version": version,
            "run_id": run,
        }
        b = version == "2.0"
        model = rnd.choice(["small", "large"])
        keys = [("agent_version", version), ("model", model)]
        lat: list[float] = []
        errored = 0
        for k in range(rnd.randint(1, 6)):
            error = rnd.random() < (0.12 if b else 0.08)
            latency = round(rnd.lognormvariate(5.0 if b else 4.9, 0.8), 3)
            lat.append(latency)
            errored |= error
            self._add(
                ToolCall(
                    **ctx,
                    event_time=when + dt.timedelta(seconds=k),
                    tool="search",
                    status="ERROR" if error else "SUCCESS",
                    error_class="RETRYABLE" if error else "NONE",
                    latency_ms=latency,
                )
            )
        cost = 0.0
        for k in range(rnd.randint(1, 3)):
            c = round(rnd.uniform(0.001, 0.02 if b else 0.015) * (3 if model == "large" else 1), 6)
            cost += c
            self._add(
                ModelCall(
                    **ctx,
                    event_time=when + dt.timedelta(seconds=k, milliseconds=1),
                    # the first call's model is the run's model; later ones may differ
                    model=model if k == 0 else rnd.choice(["small", "large"]),
                    provider="p",
                    cost_usd=c,
                    latency_ms=10.0,
                    status="SUCCESS",
                )
            )
        done = rnd.random() < (0.85 if b else 0.8)
        self._add(
            StateTransition(
                **ctx,
                event_time=when + dt.timedelta(seconds=30),
                from_state="REVIEWING" if done else "EXECUTING",
                to_state="COMPLETED" if done else "FAILED",
            )
        )
        overridden = None
        if rnd.random() < 0.4:
            for k in range(rnd.randint(1, 2)):
                decision = rnd.choice(["APPROVED", "OVERRIDDEN", "APPROVED", "REJECTED"])
                overridden = int(decision == "OVERRIDDEN")
                self._add(
                    ReviewDecision(
                        **ctx,
                        event_time=when + dt.timedelta(seconds=40 + k),
                        reviewer="r",
                        decision=decision,
                    )
                )
        if old:
            return
        for key in keys:
            self.completed[key].append(int(done))
            self.errored[key].append(errored)
            self.cost[key].append(cost)
            self.latencies[key].append(lat)
            if overridden is not None:
                self.overridden[key].append(overridden)

    def _add(self, record: Record) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def truth() -> Truth:
    return Truth()


@pytest.fixture(scope="module")
def analyst(chdb_path: Path, truth: Truth) -> Iterator[LocalAnalyst]:
    database = f"compare_{uuid.uuid4().hex[:10]}"
    clickhouse: ClickHouseBackend = open_backend(
        ClickHouseSettings(path=chdb_path, database=database)
    )
    try:
        settings = load_settings()
        migrate(clickhouse, settings)
        sink = ClickHouseSink(clickhouse, settings.sink)
        for n, record in enumerate(truth.records):
            sink.add_record(record, Position("t", 0, n))
        sink.flush(force=True).raise_for_error()
        # a replayed third: the comparison reads the deduplicated views
        for n, record in enumerate(truth.records[: len(truth.records) // 3]):
            sink.add_record(record, Position("t", 1, n))
        sink.flush(force=True).raise_for_error()
        yield LocalAnalyst(AnalystEngine(clickhouse, settings.analyst), Principal("t", "admin"))
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        clickhouse.close()


def run(analyst: LocalAnalyst, metric: str, by: str, a: str, b: str, **kw: Any) -> Comparison:
    pop = Population(by, a, b, SINCE)
    return compare(analyst, METRICS[metric], pop, SETTINGS, **kw)


@pytest.mark.parametrize(
    ("metric", "field"),
    [("completion_rate", "completed"), ("error_rate", "errored"), ("override_rate", "overridden")],
)
def test_rates_match_a_two_proportion_z_test(
    analyst: LocalAnalyst, truth: Truth, metric: str, field: str
) -> None:
    result = run(analyst, metric, "agent_version", "1.0", "2.0")
    a = getattr(truth, field)[("agent_version", "1.0")]
    b = getattr(truth, field)[("agent_version", "2.0")]
    pa, pb = sum(a) / len(a), sum(b) / len(b)
    se = math.sqrt(pa * (1 - pa) / len(a) + pb * (1 - pb) / len(b))
    z = (pb - pa) / se
    assert (result.a.units, result.b.units) == (len(a), len(b))
    assert result.a.value == pytest.approx(pa, rel=1e-12)
    assert result.b.value == pytest.approx(pb, rel=1e-12)
    assert result.difference == pytest.approx(pb - pa, rel=1e-9)
    assert result.statistic == pytest.approx(z, rel=1e-6)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-6)
    assert result.ci_low == pytest.approx(pb - pa - Z * se, rel=1e-6)
    assert result.ci_high == pytest.approx(pb - pa + Z * se, rel=1e-6)


def test_cost_per_run_matches_welchs_t_test(analyst: LocalAnalyst, truth: Truth) -> None:
    result = run(analyst, "cost_per_run", "agent_version", "1.0", "2.0")
    a = truth.cost[("agent_version", "1.0")]
    b = truth.cost[("agent_version", "2.0")]
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(SETTINGS.confidence)
    assert (result.a.units, result.b.units) == (len(a), len(b))
    assert result.a.value == pytest.approx(np.mean(a), rel=1e-9)
    assert result.b.value == pytest.approx(np.mean(b), rel=1e-9)
    assert result.difference == pytest.approx(np.mean(b) - np.mean(a), rel=1e-9)
    assert result.statistic == pytest.approx(ref.statistic, rel=1e-6)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-4, abs=1e-12)
    assert result.ci_low == pytest.approx(ci.low, rel=1e-4)
    assert result.ci_high == pytest.approx(ci.high, rel=1e-4)


def test_by_model_uses_the_model_of_each_runs_first_call(
    analyst: LocalAnalyst, truth: Truth
) -> None:
    result = run(analyst, "cost_per_run", "model", "small", "large")
    a = truth.cost[("model", "small")]
    b = truth.cost[("model", "large")]
    ref = stats.ttest_ind(b, a, equal_var=False)
    assert (result.a.units, result.b.units) == (len(a), len(b))
    assert result.statistic == pytest.approx(ref.statistic, rel=1e-6)
    assert result.p_value == pytest.approx(ref.pvalue, rel=1e-4, abs=1e-300)


def test_p95_latency_matches_a_run_level_bootstrap(analyst: LocalAnalyst, truth: Truth) -> None:
    result = run(analyst, "p95_latency", "agent_version", "1.0", "2.0")
    a_runs = truth.latencies[("agent_version", "1.0")]
    b_runs = truth.latencies[("agent_version", "2.0")]
    pa = np.percentile(np.concatenate(a_runs), 95)
    pb = np.percentile(np.concatenate(b_runs), 95)
    assert result.a.value == pytest.approx(pa, rel=1e-9)
    assert result.b.value == pytest.approx(pb, rel=1e-9)
    assert result.difference == pytest.approx(pb - pa, rel=1e-9)

    def diff(ia: np.ndarray, ib: np.ndarray) -> float:
        pooled_a = np.concatenate([a_runs[int(i)] for i in ia])
        pooled_b = np.concatenate([b_runs[int(i)] for i in ib])
        return float(np.percentile(pooled_b, 95) - np.percentile(pooled_a, 95))

    ref = stats.bootstrap(
        (np.arange(len(a_runs)), np.arange(len(b_runs))),
        diff,
        vectorized=False,
        paired=False,
        n_resamples=SETTINGS.bootstrap_iterations,
        confidence_level=SETTINGS.confidence,
        method="percentile",
        random_state=np.random.default_rng(3),
    )
    low, high = ref.confidence_interval
    width = high - low
    # two bootstraps with different generators: equal up to Monte Carlo error (~3 % of width)
    assert result.ci_low == pytest.approx(low, abs=0.15 * width)
    assert result.ci_high == pytest.approx(high, abs=0.15 * width)
    assert result.power is not None
    assert result.power.detectable == pytest.approx((Z + Z_POWER) * ref.standard_error, rel=0.15)
    again = run(analyst, "p95_latency", "agent_version", "1.0", "2.0")
    assert (again.ci_low, again.ci_high, again.p_value) == (
        result.ci_low,
        result.ci_high,
        result.p_value,
    )


def test_the_power_warning_follows_the_sample_size_formula(
    analyst: LocalAnalyst, truth: Truth
) -> None:
    a = truth.completed[("agent_version", "1.0")]
    b = truth.completed[("agent_version", "2.0")]
    pa = sum(a) / len(a)

    def needed(delta: float) -> int:
        worst = 0
        for pb in (min(1.0, pa + delta), max(0.0, pa - delta)):
            p_bar = (pa + pb) / 2
            root = Z * math.sqrt(2 * p_bar * (1 - p_bar)) + Z_POWER * math.sqrt(
                pa * (1 - pa) + pb * (1 - pb)
            )
            worst = max(worst, math.ceil(root**2 / delta**2))
        return worst

    small = run(analyst, "completion_rate", "agent_version", "1.0", "2.0", mde=0.01)
    assert small.power is not None
    assert small.power.runs_needed == needed(0.01)
    assert small.power.runs_needed > min(len(a), len(b))
    assert any("too few units" in w for w in small.warnings)
    large = run(analyst, "completion_rate", "agent_version", "1.0", "2.0", mde=0.3)
    assert large.power is not None
    assert large.power.runs_needed == needed(0.3)
    assert not any("too few units" in w for w in large.warnings)
    detectable = (Z + Z_POWER) * math.sqrt(pa * (1 - pa) * (1 / len(a) + 1 / len(b)))
    assert large.power.detectable == pytest.approx(detectable, rel=1e-9)


def test_welch_power_and_an_empty_side(analyst: LocalAnalyst, truth: Truth) -> None:
    a = truth.cost[("agent_version", "1.0")]
    b = truth.cost[("agent_version", "2.0")]
    result = run(analyst, "cost_per_run", "agent_version", "1.0", "2.0", mde=0.0001)
    assert result.power is not None
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    assert result.power.runs_needed == math.ceil((Z + Z_POWER) ** 2 * (va + vb) / 0.0001**2)
    assert result.warnings
    empty = run(analyst, "completion_rate", "agent_version", "1.0", "9.9")
    assert empty.b.units == 0
    assert empty.p_value is None
    assert "nothing to compare" in empty.warnings[0]


@pytest.mark.parametrize("metric", sorted(METRICS))
def test_a_tenant_key_compares_its_own_tenant_only(
    analyst: LocalAnalyst, truth: Truth, metric: str
) -> None:
    """The statements pass the analyst checker and its tenant scoping, for every metric."""
    own = LocalAnalyst(analyst.engine, Principal("tina", "tenant", "acme"))
    other = LocalAnalyst(analyst.engine, Principal("gina", "tenant", "globex"))
    mine = run(own, metric, "model", "small", "large")
    attribute = {
        "completion_rate": "completed",
        "error_rate": "errored",
        "override_rate": "overridden",
        "cost_per_run": "cost",
        "p95_latency": "latencies",
    }[metric]
    field = getattr(truth, attribute)
    assert (mine.a.units, mine.b.units) == (
        len(field[("model", "small")]),
        len(field[("model", "large")]),
    )
    theirs = run(other, metric, "model", "small", "large")
    assert (theirs.a.units, theirs.b.units) == (0, 0)
    assert theirs.p_value is None


def test_the_same_sides_are_refused(analyst: LocalAnalyst) -> None:
    with pytest.raises(QueryRefused, match="must differ"):
        run(analyst, "error_rate", "agent_version", "1.0", "1.0")
