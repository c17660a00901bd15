"""`eval report`: a suite's accuracy, latency percentiles and cost per task for a baseline and
a candidate, against hand-computed figures and scipy."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from agentstream.core.config import ClickHouseSettings, EvaluationSettings, load_settings
from agentstream.schemas import EvalResult
from agentstream.sinks import Position
from agentstream.sinks.analyst import AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseSink, migrate, open_backend
from agentstream.sinks.evaluation import Comparison, benchmark_report

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SINCE = NOW - dt.timedelta(days=1)
SETTINGS = EvaluationSettings()

#: the hand-computed suite: 10 tasks per version
HAND_LATENCY = [100.0 * k for k in range(1, 11)]
HAND_COST_A = [0.01] * 5 + [0.03] * 5  # mean 0.02
HAND_COST_B = [0.02] * 10  # mean 0.02, no variance
HAND_CORRECT_A = 7
HAND_CORRECT_B = 9


def result(
    version: str, suite: str, task: int, correct: bool, latency: float, cost: float
) -> EvalResult:
    return EvalResult(
        tenant_id="acme",
        user_id="bench",
        agent_id="planner",
        agent_version=version,
        run_id=f"{suite}-{version}-{task}",
        event_time=NOW - dt.timedelta(minutes=task + 1),
        suite=suite,
        task_id=f"t-{task}",
        expected="x",
        got="x" if correct else "y",
        correct=correct,
        latency_ms=latency,
        cost_usd=cost,
    )


def generated() -> tuple[list[EvalResult], dict[str, dict[str, list[float]]]]:
    rnd = random.Random(5)
    rows: list[EvalResult] = []
    truth: dict[str, dict[str, list[float]]] = {}
    for version, accuracy, mu in (("1.0", 0.72, 6.0), ("2.0", 0.8, 5.8)):
        seen = truth[version] = {"correct": [], "latency": [], "cost": []}
        for task in range(90):
            correct = rnd.random() < accuracy
            latency = round(rnd.lognormvariate(mu, 0.5), 3)
            cost = round(rnd.uniform(0.001, 0.01), 6)
            rows.append(result(version, "big", task, correct, latency, cost))
            seen["correct"].append(float(correct))
            seen["latency"].append(latency)
            seen["cost"].append(cost)
    return rows, truth


@pytest.fixture(scope="module")
def populated(chdb_path: Path) -> Iterator[tuple[LocalAnalyst, dict[str, dict[str, list[float]]]]]:
    database = f"bench_{uuid.uuid4().hex[:10]}"
    clickhouse = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        settings = load_settings()
        migrate(clickhouse, settings)
        rows, truth = generated()
        for task in range(10):
            rows.append(
                result(
                    "1.0",
                    "hand",
                    task,
                    task < HAND_CORRECT_A,
                    HAND_LATENCY[task],
                    HAND_COST_A[task],
                )
            )
            rows.append(
                result(
                    "2.0",
                    "hand",
                    task,
                    task < HAND_CORRECT_B,
                    HAND_LATENCY[task],
                    HAND_COST_B[task],
                )
            )
            # another version and an old row of the suite: neither counts
            rows.append(result("3.0", "hand", task, False, 1.0, 9.0))
        old = result("1.0", "hand", 99, False, 5000.0, 1.0).model_copy(
            update={"event_time": SINCE - dt.timedelta(hours=1)}
        )
        rows.append(old)
        sink = ClickHouseSink(clickhouse, settings.sink)
        for n, row in enumerate(rows):
            sink.add_record(row, Position("t", 0, n))
        sink.flush(force=True).raise_for_error()
        analyst = LocalAnalyst(AnalystEngine(clickhouse, settings.analyst), Principal("t", "admin"))
        yield analyst, truth
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        clickhouse.close()


def report(analyst: LocalAnalyst, suite: str) -> dict[str, Comparison]:
    found = benchmark_report(
        analyst, SETTINGS, suite=suite, baseline="1.0", candidate="2.0", since=SINCE
    )
    return {c.metric: c for c in found}


def test_hand_computed_suite(
    populated: tuple[LocalAnalyst, dict[str, dict[str, list[float]]]],
) -> None:
    analyst, _ = populated
    figures = report(analyst, "hand")
    assert list(figures) == ["accuracy", "p50_latency", "p95_latency", "cost_per_task"]
    accuracy = figures["accuracy"]
    assert (accuracy.a.units, accuracy.b.units) == (10, 10)
    assert accuracy.a.value == 0.7
    assert accuracy.b.value == 0.9
    assert accuracy.difference == pytest.approx(0.2)
    # z = 0.2 / sqrt(0.7*0.3/10 + 0.9*0.1/10) = 0.2 / sqrt(0.03)
    assert accuracy.statistic == pytest.approx(0.2 / math.sqrt(0.03), rel=1e-6)
    assert any("normal approximation" in w for w in accuracy.warnings)  # 1 failure on B
    # inclusive quantiles of 100..1000: p50 = (500 + 600) / 2, p95 = 900 + 0.55 * 100
    assert figures["p50_latency"].a.value == 550.0
    assert figures["p95_latency"].b.value == pytest.approx(955.0)
    assert figures["p50_latency"].difference == 0.0
    cost = figures["cost_per_task"]
    assert cost.a.value == pytest.approx(0.02)
    assert cost.b.value == pytest.approx(0.02)
    assert cost.difference == pytest.approx(0.0, abs=1e-12)


def test_generated_suite_matches_scipy(
    populated: tuple[LocalAnalyst, dict[str, dict[str, list[float]]]],
) -> None:
    analyst, truth = populated
    figures = report(analyst, "big")
    a, b = truth["1.0"], truth["2.0"]
    pa, pb = np.mean(a["correct"]), np.mean(b["correct"])
    se = math.sqrt(pa * (1 - pa) / 90 + pb * (1 - pb) / 90)
    accuracy = figures["accuracy"]
    assert accuracy.a.value == pytest.approx(pa)
    assert accuracy.b.value == pytest.approx(pb)
    assert accuracy.p_value == pytest.approx(2 * stats.norm.sf(abs((pb - pa) / se)), rel=1e-6)
    z = stats.norm.ppf(0.975)
    assert accuracy.ci_low == pytest.approx(pb - pa - z * se, rel=1e-6)
    cost = figures["cost_per_task"]
    ref = stats.ttest_ind(b["cost"], a["cost"], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert cost.p_value == pytest.approx(ref.pvalue, rel=1e-4)
    assert cost.ci_low == pytest.approx(ci.low, rel=1e-4)
    assert cost.ci_high == pytest.approx(ci.high, rel=1e-4)
    for name, level in (("p50_latency", 50), ("p95_latency", 95)):
        figure = figures[name]
        assert figure.a.value == pytest.approx(np.percentile(a["latency"], level))
        assert figure.b.value == pytest.approx(np.percentile(b["latency"], level))
        boot = stats.bootstrap(
            (np.array(b["latency"]), np.array(a["latency"])),
            lambda x, y, axis=-1, q=level: (
                np.percentile(x, q, axis=axis) - np.percentile(y, q, axis=axis)
            ),
            paired=False,
            n_resamples=SETTINGS.bootstrap_iterations,
            method="percentile",
            random_state=np.random.default_rng(9),
        )
        low, high = boot.confidence_interval
        width = high - low
        assert figure.ci_low == pytest.approx(low, abs=0.15 * width), name
        assert figure.ci_high == pytest.approx(high, abs=0.15 * width), name
