"""Each canned report on a populated database, checked against figures computed here."""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentstream.core.config import ClickHouseSettings, load_settings
from agentstream.schemas import ModelCall, Record, ReviewDecision, StateTransition, ToolCall
from agentstream.sinks import Position
from agentstream.sinks.analyst import REPORTS, AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate, open_backend

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
SINCE = NOW - dt.timedelta(hours=2)
TENANTS = ("acme", "globex", "initech")
AGENTS = (("planner", "1.0"), ("planner", "1.1"), ("coder", "2.0"))
TOOLS = tuple(f"tool-{n:02d}" for n in range(12))
BUCKET_S = 600


def quantile(values: Iterable[float], level: float) -> float:
    """Inclusive (R7 / NumPy linear) quantile."""
    data = sorted(values)
    h = (len(data) - 1) * level
    lo = math.floor(h)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (h - lo) * (data[hi] - data[lo])


class Data:
    """Generated events, the ones inside the report window kept apart as ground truth."""

    def __init__(self, seed: int = 7) -> None:
        rnd = random.Random(seed)
        self.records: list[Record] = []
        self.calls: list[ToolCall] = []
        self.model_calls: list[ModelCall] = []
        self.moves: list[StateTransition] = []
        self.reviews: list[ReviewDecision] = []
        for i in range(900):
            in_window = i % 10 != 0  # every tenth is older than --since
            when = (
                NOW - dt.timedelta(seconds=rnd.uniform(1, 7000))
                if in_window
                else SINCE - dt.timedelta(seconds=rnd.uniform(1, 3000))
            )
            tenant = rnd.choice(TENANTS)
            agent, version = rnd.choice(AGENTS)
            ctx = self._ctx(tenant, agent, version, f"run-{i % 97}", when)
            status, error_class = rnd.choice(
                [
                    ("SUCCESS", "NONE"),
                    ("SUCCESS", "NONE"),
                    ("SUCCESS", "NONE"),
                    ("ERROR", "RETRYABLE"),
                    ("ERROR", "NON_RETRYABLE"),
                    ("ERROR", "TIMEOUT"),
                    ("PARTIAL", "RETRYABLE"),
                    ("PARTIAL", "NONE"),
                ]
            )
            call = ToolCall(
                **ctx,
                tool=TOOLS[min(int(rnd.expovariate(0.4)), len(TOOLS) - 1)],
                status=status,
                error_class=error_class,
                latency_ms=round(rnd.lognormvariate(4, 1), 3),
                # what an Emitter replaced, and text only the sink's pass redacts
                redactions={"email": 1 + i % 3, "card": 1} if i % 5 == 0 else {},
                result_summary=f"mailed ops{i}@example.com" if i % 7 == 0 else None,
            )
            self._add(call, in_window, self.calls)
            if i % 3 == 0:
                model = ModelCall(
                    **self._ctx(tenant, agent, version, f"run-{i}", when),
                    model="m",
                    provider="p",
                    input_tokens=rnd.randint(1, 5000),
                    output_tokens=rnd.randint(1, 2000),
                    cost_usd=round(rnd.uniform(0, 0.2), 6),
                    latency_ms=5.0,
                    status="SUCCESS",
                )
                self._add(model, in_window, self.model_calls)
        for r in range(120):
            self._run(rnd, r)

    @staticmethod
    def _ctx(tenant: str, agent: str, version: str, run: str, when: dt.datetime) -> dict[str, Any]:
        return {
            "tenant_id": tenant,
            "user_id": "u",
            "agent_id": agent,
            "agent_version": version,
            "run_id": run,
            "event_time": when,
        }

    def _add(self, record: Record, in_window: bool, bucket: list[Any]) -> None:
        self.records.append(record)
        if in_window:
            bucket.append(record)

    def _run(self, rnd: random.Random, r: int) -> None:
        tenant = rnd.choice(TENANTS)
        agent, version = rnd.choice(AGENTS)
        in_window = r % 8 != 0
        start = (
            NOW - dt.timedelta(seconds=rnd.uniform(600, 6000))
            if in_window
            else SINCE - dt.timedelta(hours=1)
        )
        path = ["INIT", "PREPARING", "EXECUTING", "REVIEWING", "COMPLETED"]
        if r % 4 == 1:
            path = ["INIT", "PREPARING", "EXECUTING", "FAILED"]
        previous: str | None = None
        when = start
        for state in path:
            dwell = rnd.randint(5, 90_000) if previous else None
            when = when + dt.timedelta(milliseconds=dwell or 0)
            move = StateTransition(
                **self._ctx(tenant, agent, version, f"run-x{r}", when),
                from_state=previous,
                to_state=state,
                dwell_ms=dwell,
            )
            self._add(move, in_window, self.moves)
            previous = state
        for _ in range(rnd.randint(0, 2)):
            review = ReviewDecision(
                **self._ctx(tenant, agent, version, f"run-x{r}", when),
                reviewer="rev",
                decision=rnd.choice(["APPROVED", "REJECTED", "OVERRIDDEN"]),
            )
            self._add(review, in_window, self.reviews)


@pytest.fixture(scope="module")
def data() -> Data:
    return Data()


@pytest.fixture(scope="module")
def populated(chdb_path: Path, data: Data) -> Iterator[ClickHouseBackend]:
    """One database for the module's read-only reports (populating it is the slow part)."""
    database = f"reports_{uuid.uuid4().hex[:10]}"
    clickhouse = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        _populate(clickhouse, data)
        yield clickhouse
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
        clickhouse.close()


@pytest.fixture
def analyst(populated: ClickHouseBackend) -> LocalAnalyst:
    return LocalAnalyst(
        AnalystEngine(populated, load_settings().analyst), Principal("tester", "admin")
    )


def _populate(clickhouse: ClickHouseBackend, data: Data) -> None:
    settings = load_settings()
    migrate(clickhouse, settings)
    sink = ClickHouseSink(clickhouse, settings.sink)
    for n, record in enumerate(data.records):
        sink.add_record(record, Position("t", 0, n))
    sink.flush(force=True).raise_for_error()
    # a replay of a third of it, cut differently: the reports must not count it twice
    for n, record in enumerate(data.records[: len(data.records) // 3]):
        sink.add_record(record, Position("t", 0, n) if n % 2 else Position("t", 1, n))
    sink.flush(force=True).raise_for_error()
    raw = clickhouse.query("SELECT count() FROM tool_calls").scalar()
    assert raw > clickhouse.query("SELECT count() FROM tool_calls FINAL").scalar()


def run(analyst: LocalAnalyst, name: str, tenant: str | None = None) -> list[dict[str, Any]]:
    return analyst.report(name, since=SINCE, tenant=tenant, bucket_s=BUCKET_S).dicts()


def same(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert set(want) <= set(got)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert got[key] == value, key


def scoped(rows: list[Any], tenant: str | None) -> list[Any]:
    return [r for r in rows if tenant is None or r.tenant_id == tenant]


TENANT_CASES = [None, "globex"]


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_qps_and_success_rate(analyst: LocalAnalyst, data: Data, tenant: str | None) -> None:
    by_bucket: dict[int, list[ToolCall]] = defaultdict(list)
    for call in scoped(data.calls, tenant):
        by_bucket[int(call.event_time.timestamp()) // BUCKET_S * BUCKET_S].append(call)
    expected = [
        {
            "bucket": dt.datetime.fromtimestamp(start, dt.UTC),
            "calls": len(calls),
            "qps": len(calls) / BUCKET_S,
            "success_rate": sum(c.status == "SUCCESS" for c in calls) / len(calls),
        }
        for start, calls in sorted(by_bucket.items())
    ]
    same(run(analyst, "qps", tenant), expected)


def _latency(
    calls: list[ToolCall], key: Callable[[ToolCall], tuple[str, ...]], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    groups: dict[tuple[str, ...], list[float]] = defaultdict(list)
    for call in calls:
        groups[key(call)].append(call.latency_ms)
    return [
        {
            **dict(zip(names, group, strict=True)),
            "calls": len(values),
            "p50_ms": quantile(values, 0.5),
            "p95_ms": quantile(values, 0.95),
            "p99_ms": quantile(values, 0.99),
        }
        for group, values in sorted(groups.items())
    ]


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_latency_by_tool(analyst: LocalAnalyst, data: Data, tenant: str | None) -> None:
    expected = _latency(scoped(data.calls, tenant), lambda c: (c.tool,), ("tool",))
    same(run(analyst, "latency-tool", tenant), expected)


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_latency_by_agent_version(analyst: LocalAnalyst, data: Data, tenant: str | None) -> None:
    expected = _latency(
        scoped(data.calls, tenant),
        lambda c: (c.agent_id, c.agent_version),
        ("agent_id", "agent_version"),
    )
    same(run(analyst, "latency-version", tenant), expected)


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_top_tools_by_calls_and_by_errors(
    analyst: LocalAnalyst, data: Data, tenant: str | None
) -> None:
    calls = Counter(c.tool for c in scoped(data.calls, tenant))
    errors = Counter(c.tool for c in scoped(data.calls, tenant) if c.status == "ERROR")
    by_calls = sorted(calls, key=lambda t: (-calls[t], t))[:10]
    assert len(calls) > 10  # so LIMIT 10 matters
    same(
        run(analyst, "top-tools", tenant),
        [
            {"tool": t, "calls": calls[t], "errors": errors[t], "error_rate": errors[t] / calls[t]}
            for t in by_calls
        ],
    )
    by_errors = sorted(errors, key=lambda t: (-errors[t], t))[:10]
    same(
        run(analyst, "top-errors", tenant),
        [{"tool": t, "errors": errors[t], "calls": calls[t]} for t in by_errors],
    )


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_retryable_vs_non_retryable(analyst: LocalAnalyst, data: Data, tenant: str | None) -> None:
    classes = Counter(
        c.error_class.value for c in scoped(data.calls, tenant) if c.error_class != "NONE"
    )
    total = sum(classes.values())
    expected = [
        {"error_class": k, "calls": n, "share": n / total}
        for k, n in sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    same(run(analyst, "error-classes", tenant), expected)


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_completion_and_override_rates(
    analyst: LocalAnalyst, data: Data, tenant: str | None
) -> None:
    done: dict[tuple[str, str], set[str]] = defaultdict(set)
    failed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for move in scoped(data.moves, tenant):
        key = (move.agent_id, move.agent_version)
        if move.to_state == "COMPLETED":
            done[key].add(move.run_id)
        elif move.to_state == "FAILED":
            failed[key].add(move.run_id)
    reviews: Counter[tuple[str, str]] = Counter()
    overrides: Counter[tuple[str, str]] = Counter()
    for review in scoped(data.reviews, tenant):
        key = (review.agent_id, review.agent_version)
        reviews[key] += 1
        overrides[key] += review.decision == "OVERRIDDEN"
    keys = sorted(set(done) | set(failed) | set(reviews))
    expected = []
    for agent, version in keys:
        c, f = len(done[(agent, version)]), len(failed[(agent, version)])
        r, o = reviews[(agent, version)], overrides[(agent, version)]
        expected.append(
            {
                "agent_id": agent,
                "agent_version": version,
                "completed": c,
                "failed": f,
                "completion_rate": c / (c + f) if c + f else None,
                "reviews": r,
                "overrides": o,
                "override_rate": o / r if r else None,
            }
        )
    same(run(analyst, "completion", tenant), expected)


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_state_dwell_time_distribution(
    analyst: LocalAnalyst, data: Data, tenant: str | None
) -> None:
    dwell: dict[str, list[int]] = defaultdict(list)
    for move in scoped(data.moves, tenant):
        if move.from_state is not None and move.dwell_ms is not None:
            dwell[move.from_state.value].append(move.dwell_ms)
    expected = [
        {
            "state": state,
            "transitions": len(values),
            "p50_ms": quantile(values, 0.5),
            "p95_ms": quantile(values, 0.95),
            "p99_ms": quantile(values, 0.99),
            "mean_ms": sum(values) / len(values),
            "max_ms": max(values),
        }
        for state, values in sorted(dwell.items())
    ]
    same(run(analyst, "dwell", tenant), expected)


@pytest.mark.parametrize("tenant", TENANT_CASES)
@pytest.mark.parametrize(
    ("report", "column"), [("cost-agent", "agent_id"), ("cost-tenant", "tenant_id")]
)
def test_cost_per_agent_and_per_tenant(
    analyst: LocalAnalyst, data: Data, tenant: str | None, report: str, column: str
) -> None:
    groups: dict[str, list[ModelCall]] = defaultdict(list)
    for call in scoped(data.model_calls, tenant):
        groups[getattr(call, column)].append(call)
    totals: dict[str, dict[str, Any]] = {
        key: {
            column: key,
            "model_calls": len(calls),
            "tokens_in": sum(c.input_tokens for c in calls),
            "tokens_out": sum(c.output_tokens for c in calls),
            "cost_usd": math.fsum(c.cost_usd for c in calls),
        }
        for key, calls in groups.items()
    }
    actual = run(analyst, report, tenant)
    # ordered by cost (descending); compare as a mapping, then check the order
    assert [row[column] for row in actual] == sorted(
        totals, key=lambda k: (-float(totals[k]["cost_usd"]), k)
    )
    same(actual, [totals[row[column]] for row in actual])


@pytest.mark.parametrize("tenant", TENANT_CASES)
def test_redactions_by_the_emitter_and_by_the_sink(
    analyst: LocalAnalyst, data: Data, tenant: str | None
) -> None:
    expected: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: {"e": 0, "s": 0})
    for call in scoped(data.calls, tenant):
        for kind, n in call.redactions.items():
            expected[call.tenant_id, kind]["e"] += n
        if call.result_summary is not None:
            expected[call.tenant_id, "email"]["s"] += 1
    actual = run(analyst, "redactions", tenant)
    assert {row["stream"] for row in actual} == {"tool_calls"}
    got = {
        (row["tenant_id"], row["kind"]): {"e": row["by_emitter"], "s": row["by_sink"]}
        for row in actual
    }
    assert got == expected
    assert all(row["total"] == row["by_emitter"] + row["by_sink"] for row in actual)
    assert not any("example.com" in str(value) for row in actual for value in row.values())


def test_every_report_is_covered() -> None:
    tested = {
        "qps",
        "latency-tool",
        "latency-version",
        "top-tools",
        "top-errors",
        "error-classes",
        "completion",
        "dwell",
        "cost-agent",
        "cost-tenant",
        "redactions",
        # tests/sinks/test_evaluation_business.py
        "business",
        "handoffs",
    }
    assert tested == set(REPORTS)
