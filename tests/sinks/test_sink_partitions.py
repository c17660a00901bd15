"""Batches ClickHouse will not take as they are: split, store the rest, dead-letter the refused.

Real broker, real embedded engine. A batch whose rows span more months than one INSERT
block may hold (code 252, "Too many partitions for single INSERT block") is split by
month and stored whole; a row the engine refuses (a violated constraint) is isolated
and dead-lettered with the engine's message while the rest is stored; the transient
form of code 252 (too many parts: merges behind) is retried, never dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import pytest
from confluent_kafka import Producer

from agentstream.core.config import Settings, load_settings
from agentstream.core.errors import StorageError
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import ToolCall, encode_model
from agentstream.sinks.clickhouse import (
    ClickHouseBackend,
    is_rejection,
    spans_too_many_partitions,
)
from agentstream.sinks.consumer import SinkStats, SinkWorker
from tests.support.clickhouse import FlakyBackend

pytestmark = pytest.mark.integration

TIMEOUT_S = 90.0
START = dt.datetime.now(dt.UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
TOO_MANY_PARTITIONS = "Too many partitions for single INSERT block"
#: the transient form of code 252, as a ClickHouse server words it
TOO_MANY_PARTS = (
    "ClickHouse insert into tool_calls: Code: 252. DB::Exception: Too many parts (3001 with "
    "average size of 1.00 KiB) in table 'agentstream.tool_calls'. Merges are processing "
    "significantly slower than inserts. (TOO_MANY_PARTS)"
)


def make_settings(broker: BrokerHandle) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
        topics={"prefix": f"parts.{tag}."},
        # rows over ten years of months, one from 1969: the engine's own limits are under
        # test here, so the clock-sanity rule (which would skip them first) is widened
        clock={"max_future_skew_s": 20 * 365 * 86_400, "max_past_s": 100 * 365 * 86_400},
        sink={
            "consumer_group": f"sink-{tag}",
            "batch_size": 1_000,
            "flush_interval_s": 2.0,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.2,
        },
    )
    broker.create_topics(list(settings.topics.all().values()), 1)
    return settings


def monthly_calls(months: int) -> list[ToolCall]:
    """One call per month, from this month on (future months: no TTL has expired them)."""
    return [
        ToolCall(
            tenant_id="acme",
            user_id="u",
            agent_id="agent",
            agent_version="1",
            run_id=f"run-{i}",
            event_time=START + dt.timedelta(days=31 * i),
            tool="search",
            status="SUCCESS",
            latency_ms=1.0,
        )
        for i in range(months)
    ]


def produce(broker: BrokerHandle, settings: Settings, records: Sequence[ToolCall]) -> None:
    producer = Producer(broker.client_config({"linger.ms": 5}))
    for record in records:
        producer.produce(settings.topics.name("tool_calls"), value=encode_model(record))
    assert producer.flush(30) == 0


def stored_ids(backend: ClickHouseBackend) -> list[str]:
    return [r[0] for r in backend.query("SELECT toString(event_id) FROM tool_calls FINAL").rows]


def months_stored(backend: ClickHouseBackend) -> int:
    return int(backend.query("SELECT uniqExact(toYYYYMM(event_time)) FROM tool_calls").scalar())


def test_classification_of_code_252() -> None:
    permanent = StorageError(
        "ClickHouse (embedded): Code: 252. DB::Exception: Too many partitions for single "
        "INSERT block (more than 100). (TOO_MANY_PARTS)"
    )
    assert spans_too_many_partitions(permanent)
    assert not spans_too_many_partitions(StorageError(TOO_MANY_PARTS))
    assert not is_rejection(StorageError(TOO_MANY_PARTS))  # retried, never dead-lettered
    assert not spans_too_many_partitions(StorageError("Code: 210. Connection refused"))


def test_a_batch_spanning_more_than_100_months_is_split_and_stored_whole(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    records = monthly_calls(130)
    produce(kafka_broker, settings, records)
    spy = FlakyBackend(clickhouse)
    worker = SinkWorker(settings, backend=spy, streams=["tool_calls", "invalid"])

    def done(stats: SinkStats) -> bool:
        return stats.stored.get("tool_calls", 0) >= len(records)

    worker.run_until(done, TIMEOUT_S)
    worker.close()
    refused = [e for e in spy.errors if TOO_MANY_PARTITIONS in e]
    print(
        f"\nPARTITIONS: produced={len(records)} months={months_stored(clickhouse)} "
        f"inserts attempted={spy.attempts} refused for 252={len(refused)} "
        f"stored FINAL={len(stored_ids(clickhouse))} dead-lettered={worker.stats.dead_lettered}"
    )
    assert refused  # the engine did refuse the whole batch ...
    assert sorted(stored_ids(clickhouse)) == sorted(r.event_id for r in records)  # ... stored
    assert months_stored(clickhouse) == 130
    assert worker.stats.dead_lettered == 0
    assert worker.stats.write_failures == 0  # split at once, no retry round


def test_a_refused_row_is_dead_lettered_with_the_engine_message_and_the_rest_stored(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    records = monthly_calls(120)
    bad = records[57].model_copy(update={"event_time": dt.datetime(1969, 12, 31, tzinfo=dt.UTC)})
    records[57] = bad
    produce(kafka_broker, settings, records)
    spy = FlakyBackend(clickhouse)
    spy.fail_next(3, TOO_MANY_PARTS)  # and merges behind at first: retried, not refused
    worker = SinkWorker(settings, backend=spy, streams=["tool_calls", "invalid"])

    def done(stats: SinkStats) -> bool:
        return (
            stats.stored.get("tool_calls", 0) >= len(records) - 1
            and stats.stored.get("invalid_events", 0) >= 1
        )

    worker.run_until(done, TIMEOUT_S)
    worker.close()
    letters = clickhouse.query(
        "SELECT toString(event_id), reason, error_type FROM invalid_events FINAL"
    ).rows
    print(
        f"\nREFUSED: produced={len(records)} stored FINAL={len(stored_ids(clickhouse))} "
        f"dead letters={len(letters)} retries for 'too many parts'={worker.stats.write_failures} "
        f"reason={letters[0][1][:120] if letters else None!r}"
    )
    assert worker.stats.write_failures == 3
    assert sorted(stored_ids(clickhouse)) == sorted(r.event_id for r in records if r is not bad)
    assert len(letters) == 1
    event_id, reason, error_type = letters[0]
    assert event_id == bad.event_id
    assert error_type == "StorageRejected"
    assert "event_time_in_ttl_range" in reason  # the engine's own message
    assert "VIOLATED_CONSTRAINT" in reason
