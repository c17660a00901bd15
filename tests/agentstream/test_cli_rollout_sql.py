"""The rollout / review commands' SQL takes user values as server-side parameters (run on
real chdb with hostile values), and the rollout records' delivery is checked."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.cli.review import RUN_SQL
from agentstream.cli.rollout import _history_query, _send
from agentstream.core.config import load_settings
from agentstream.core.errors import DeliveryError
from agentstream.schemas import Record, ReviewRequest, RolloutVerdict
from agentstream.sinks import Position
from agentstream.sinks.analyst import AnalystEngine, LocalAnalyst, Principal
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate

HOSTILE = "x' OR '1'='1"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def analyst_with(clickhouse: ClickHouseBackend, records: list[Record]) -> LocalAnalyst:
    settings = load_settings()
    migrate(clickhouse, settings)
    sink = ClickHouseSink(clickhouse, settings.sink)
    for n, record in enumerate(records):
        sink.add_record(record, Position("t", 0, n))
    sink.flush(force=True).raise_for_error()
    return LocalAnalyst(AnalystEngine(clickhouse, settings.analyst), Principal("t", "admin"))


def verdict(agent: str) -> RolloutVerdict:
    return RolloutVerdict(
        rollout_id=str(uuid.uuid4()), agent_id=agent, baseline="1", candidate="2",
        verdict="HOLD", stage_index=0, stage_percent=5, reason="r",
        decided_at=T0 + timedelta(minutes=1), stage_started_at=T0,
    )  # fmt: skip


def request(run: str) -> ReviewRequest:
    return ReviewRequest(
        request_id=str(uuid.uuid4()), requested_at=T0, tenant_id="acme", agent_id="a",
        agent_version="1", run_id=run, outcome="COMPLETED", reason="sampled",
        sample_rate=1.0, hash_fraction=0.5,
    )  # fmt: skip


def test_history_agent_is_a_parameter(clickhouse: ClickHouseBackend) -> None:
    agents = ["a", "b", HOSTILE]
    analyst = analyst_with(clickhouse, [verdict(a) for a in agents])
    for agent in [*agents, "x"]:
        sql, params = _history_query(agent, 10)
        assert HOSTILE not in sql
        rows = analyst.query(sql, params).rows
        assert [r[1] for r in rows] == [a for a in agents if a == agent]
    sql, params = _history_query(None, 2)
    assert len(analyst.query(sql, params).rows) == 2


def test_review_run_is_a_parameter(clickhouse: ClickHouseBackend) -> None:
    analyst = analyst_with(clickhouse, [request("run-1"), request(HOSTILE)])
    assert analyst.query(RUN_SQL, {"run": "x' OR '1'='1' --"}).rows == []
    assert len(analyst.query(RUN_SQL, {"run": HOSTILE}).rows) == 1


class Producer:
    """Records what is produced; ``outcome`` decides each delivery report and the flush."""

    def __init__(self, refuse: bool, left: int) -> None:
        self.refuse, self.left = refuse, left
        self.sent: list[tuple[str, bytes]] = []
        self._reports: list[Callable[[Any, Any], None]] = []

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        self.sent.append((topic, key))
        self._reports.append(on_delivery)

    def flush(self, timeout: float) -> int:
        message = type("M", (), {"topic": lambda self: "t"})()
        for report in self._reports:
            report("refused" if self.refuse else None, message)
        return self.left


@pytest.mark.parametrize(("refuse", "left"), [(False, 0), (True, 0), (False, 1)])
def test_rollback_records_go_through_one_checked_flush(refuse: bool, left: int) -> None:
    settings = load_settings()
    producer = Producer(refuse, left)
    records = [("rollout_verdicts", b"a", verdict("a")), ("alerts", b"r|s", verdict("a"))]
    if refuse or left:
        with pytest.raises(DeliveryError):
            _send(producer, settings, records)
    else:
        _send(producer, settings, records)
    assert [t for t, _ in producer.sent] == [
        settings.topics.name("rollout_verdicts"),
        settings.topics.name("alerts"),
    ]
