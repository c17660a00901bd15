"""The sink worker against the real broker and the real engine: exactly once by event_id."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import (
    Alert,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
    decode_model,
    encode_model,
)
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkStats, SinkWorker
from tests.support.clickhouse import FlakyBackend

pytestmark = pytest.mark.integration

PARTITIONS = 3
TIMEOUT_S = 120.0
NOW = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def make_settings(broker: BrokerHandle, **sink: Any) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
        topics={"prefix": f"sinktest.{tag}."},
        sink={
            "consumer_group": f"sink-{tag}",
            "batch_size": 40,
            "flush_interval_s": 0.2,
            **sink,
        },
    )


def create_topics(broker: BrokerHandle, settings: Settings) -> None:
    broker.create_topics(list(settings.topics.all().values()), PARTITIONS)


def ctx(i: int) -> dict[str, Any]:
    return {
        "tenant_id": f"tenant-{i % 3}",
        "user_id": "u",
        "agent_id": "agent",
        "agent_version": "1",
        "run_id": f"run-{i % 50}",
        "event_time": NOW + dt.timedelta(milliseconds=i),
    }


def workload() -> dict[str, list[Record]]:
    window = {"window_start": NOW, "window_end": NOW + dt.timedelta(seconds=1)}
    return {
        "tool_calls": [
            ToolCall(**ctx(i), tool=f"t{i % 5}", status="SUCCESS", latency_ms=float(i))
            for i in range(500)
        ],
        "model_calls": [
            ModelCall(**ctx(i), model="m", provider="p", latency_ms=1.0, status="SUCCESS")
            for i in range(60)
        ],
        "reviews": [ReviewDecision(**ctx(i), reviewer="r", decision="APPROVED") for i in range(30)],
        "lifecycle": [StateTransition(**ctx(i), to_state="INIT") for i in range(120)],
        "rollups": [
            Rollup(resolution=res, **window, scope_kind="GLOBAL", scope_key=f"k{i}", count=i)
            for i in range(10)
            for res in ("1s", "1m", "1h")
        ],
        "alerts": [
            Alert(
                rule_id="r",
                state="FIRING",
                severity="WARNING",
                scope_key=f"s{i}",
                metric="m",
                value=1.0,
                threshold=0.5,
                comparator=">",
                resolution="1m",
                **window,
                message="m",
            )
            for i in range(5)
        ],
    }


def produce(broker: BrokerHandle, settings: Settings, stream: str, values: list[bytes]) -> None:
    producer = Producer(broker.client_config({"linger.ms": 5}))
    topic = settings.topics.name(stream)
    for n, value in enumerate(values):
        producer.produce(topic, key=f"k{n % 7}".encode(), value=value)
    assert producer.flush(30) == 0


def produce_records(broker: BrokerHandle, settings: Settings, data: dict[str, list[Record]]) -> int:
    for stream, records in data.items():
        produce(broker, settings, stream, [encode_model(r) for r in records])
    return sum(len(records) for records in data.values())


def committed_total(broker: BrokerHandle, settings: Settings) -> int:
    consumer = Consumer(
        broker.client_config(
            {"group.id": settings.sink.consumer_group, "enable.auto.commit": False}
        )
    )
    try:
        parts = [
            TopicPartition(topic, p)
            for topic in settings.topics.all().values()
            for p in range(PARTITIONS)
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30))
    finally:
        consumer.close()


def key_of(table: str) -> str:
    if table == "alerts":
        return "alert_id"
    if table == "invalid_events":
        return "invalid_id"
    if table.startswith("rollups"):
        return "scope_key"
    return "event_id"


def expected_keys(data: dict[str, list[Record]]) -> dict[str, set[str]]:
    tables = {
        "tool_calls": "tool_calls",
        "model_calls": "model_calls",
        "reviews": "review_decisions",
        "lifecycle": "state_transitions",
        "alerts": "alerts",
    }
    out: dict[str, set[str]] = {}
    for stream, table in tables.items():
        out[table] = {str(getattr(r, key_of(table))) for r in data[stream]}
    for resolution in ("1s", "1m", "1h"):
        out[f"rollups_{resolution}"] = {
            r.scope_key
            for r in data["rollups"]
            if isinstance(r, Rollup) and r.resolution == resolution
        }
    return out


def stored_keys(backend: ClickHouseBackend, table: str) -> list[str]:
    result = backend.query(f"SELECT toString({key_of(table)}) FROM {table} FINAL")
    return [row[0] for row in result.rows]


def all_stored(backend: ClickHouseBackend, expected: dict[str, set[str]]) -> bool:
    return all(
        backend.query(f"SELECT count() FROM {table} FINAL").scalar() >= len(keys)
        for table, keys in expected.items()
    )


class SimulatedCrash(Exception):
    pass


class CrashingWorker(SinkWorker):
    """Dies on its second commit: after the insert, before the offsets are committed."""

    commits_allowed = 1

    def commit_offsets(self, offsets: list[Any]) -> None:
        if self.commits_allowed == 0:
            raise SimulatedCrash("killed between insert and commit")
        self.commits_allowed -= 1
        super().commit_offsets(offsets)


def test_exactly_once_by_event_id_across_a_crash_mid_batch(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    create_topics(kafka_broker, settings)
    data = workload()
    produced = produce_records(kafka_broker, settings, data)
    expected = expected_keys(data)

    first = CrashingWorker(settings, backend=clickhouse)
    with pytest.raises(SimulatedCrash):
        first.run_until(lambda _s: False, TIMEOUT_S)
    first.abort()
    committed = committed_total(kafka_broker, settings)
    assert first.stats.rows > 0
    assert committed < first.stats.consumed  # stored, not committed: these come again
    assert committed < produced

    second = SinkWorker(settings, backend=clickhouse)
    replay = produced - committed
    second.run_until(lambda s: s.consumed >= replay and all_stored(clickhouse, expected), TIMEOUT_S)
    second.close()
    assert second.stats.consumed == replay
    assert committed_total(kafka_broker, settings) == produced

    for table, keys in expected.items():
        stored = stored_keys(clickhouse, table)
        assert len(stored) == len(keys), table  # count() FINAL == produced
        assert set(stored) == keys, table
        distinct = clickhouse.query(f"SELECT count(DISTINCT {key_of(table)}) FROM {table}")
        assert distinct.scalar() == len(keys), table
        view = clickhouse.query(f"SELECT count() FROM {table}_dedup").scalar()
        assert view == len(keys), table


def test_bad_records_are_skipped_dead_lettered_or_dropped(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    # the engine's own refusal is under test, not the clock-sanity rule that would skip 1969
    clock = settings.clock.model_copy(update={"max_past_s": 100 * 365 * 86_400})
    settings = settings.model_copy(update={"clock": clock})
    create_topics(kafka_broker, settings)
    good = [ToolCall(**ctx(i), tool="t", status="SUCCESS", latency_ms=1.0) for i in range(5)]
    too_old = ToolCall(
        **{**ctx(99), "event_time": dt.datetime(1969, 12, 31, tzinfo=dt.UTC)},
        tool="t",
        status="SUCCESS",
        latency_ms=1.0,
    )
    produce(
        kafka_broker,
        settings,
        "tool_calls",
        [*(encode_model(c) for c in good), b"\xc3\x01garbage", encode_model(too_old)],
    )
    misplaced = encode_model(good[0])  # a ToolCall on the lifecycle topic
    produce(kafka_broker, settings, "lifecycle", [b"\x00\x00", misplaced])
    produce(kafka_broker, settings, "invalid", [b"not a dead letter"])

    worker = SinkWorker(settings, backend=clickhouse)

    def done(stats: SinkStats) -> bool:
        return stats.consumed >= 9 + 3 and stats.stored.get("invalid_events", 0) >= 3

    worker.run_until(done, TIMEOUT_S)
    worker.close()
    stats = worker.stats
    assert stats.skipped == 1  # the raw garbage: the contract gate dead-letters it
    assert stats.dead_lettered == 3  # refused row + 2 bad lifecycle records
    assert stats.dropped == 1  # garbage on the dead-letter topic itself
    assert stats.stored["tool_calls"] == 5

    letters = clickhouse.query(
        "SELECT source_topic, error_type, reason, event_id, hex(raw) AS raw "
        "FROM invalid_events FINAL ORDER BY source_topic, error_type"
    ).dicts()
    assert [(d["source_topic"], d["error_type"]) for d in letters] == [
        (settings.topics.name("lifecycle"), "CodecError"),
        (settings.topics.name("lifecycle"), "CodecError"),
        (settings.topics.name("tool_calls"), "StorageRejected"),
    ]
    refused = letters[2]
    assert refused["event_id"] == too_old.event_id
    assert "event_time_in_ttl_range" in str(refused["reason"])
    assert decode_model(bytes.fromhex(str(refused["raw"])), ToolCall) == too_old
    [wrong_type] = [d for d in letters if d["raw"] == misplaced.hex().upper()]
    assert "expected a StateTransition" in str(wrong_type["reason"])


def test_a_slow_database_pauses_consumption_instead_of_buffering_everything(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(
        kafka_broker,
        batch_size=10,
        max_buffered_rows=25,
        retry_initial_s=0.05,
        retry_max_s=0.2,
    )
    create_topics(kafka_broker, settings)
    calls = [ToolCall(**ctx(i), tool="t", status="SUCCESS", latency_ms=1.0) for i in range(200)]
    produce(kafka_broker, settings, "tool_calls", [encode_model(c) for c in calls])
    flaky = FlakyBackend(clickhouse, failures=8)
    worker = SinkWorker(settings, backend=flaky)
    most = [0]

    def done(stats: SinkStats) -> bool:
        if worker._sink is not None:
            most[0] = max(most[0], worker._sink.buffered)
        return stats.stored.get("tool_calls", 0) >= len(calls)

    worker.run_until(done, TIMEOUT_S)
    worker.close()
    assert worker.stats.write_failures >= 8
    assert worker.stats.pauses >= 1
    assert most[0] <= 25
    stored = stored_keys(clickhouse, "tool_calls")
    assert sorted(stored) == sorted(c.event_id for c in calls)


def test_background_thread_start_and_stop(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    create_topics(kafka_broker, settings)
    calls = [ToolCall(**ctx(i), tool="t", status="SUCCESS", latency_ms=1.0) for i in range(30)]
    produce(kafka_broker, settings, "tool_calls", [encode_model(c) for c in calls])
    worker = SinkWorker(settings, backend=clickhouse)
    worker.start()
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=TIMEOUT_S)
    while worker.stats.stored.get("tool_calls", 0) < 30 and dt.datetime.now(dt.UTC) < deadline:
        import time

        time.sleep(0.05)
    worker.stop()
    assert worker.error is None
    assert worker.stats.stored.get("tool_calls") == 30
    assert committed_total(kafka_broker, settings) == 30


def test_absurd_event_times_never_reach_the_event_tables(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    """The processors' clock-sanity rule, applied by the sink too: a tool call dated years
    ago is skipped (the processors dead-letter it); on a processor output it is a dead letter."""
    settings = make_settings(kafka_broker)
    create_topics(kafka_broker, settings)
    ancient = {**ctx(1), "event_time": dt.datetime(1999, 1, 1, tzinfo=dt.UTC)}
    ahead = {**ctx(2), "event_time": dt.datetime.now(dt.UTC) + dt.timedelta(days=2)}
    good: list[Record] = [
        ToolCall(**ctx(i), tool="t", status="SUCCESS", latency_ms=1.0) for i in range(10)
    ]
    bad_calls: list[Record] = [
        ToolCall(**ancient, tool="t", status="SUCCESS", latency_ms=1.0),
        ToolCall(**ahead, tool="t", status="SUCCESS", latency_ms=1.0),
    ]
    bad_transition = StateTransition(**ancient, to_state="INIT")
    produce_records(
        kafka_broker, settings, {"tool_calls": good + bad_calls, "lifecycle": [bad_transition]}
    )
    worker = SinkWorker(settings, backend=clickhouse)
    try:
        worker.run_until(lambda s: s.consumed >= 13 and s.skipped >= 2, TIMEOUT_S)
        worker.run_until(
            lambda _s: clickhouse.query("SELECT count() FROM invalid_events FINAL").scalar() >= 1,
            TIMEOUT_S,
        )
    finally:
        worker.close()
    assert sorted(stored_keys(clickhouse, "tool_calls")) == sorted(
        e.event_id for e in good if isinstance(e, ToolCall)
    )
    assert stored_keys(clickhouse, "state_transitions") == []
    [(error_type, reason)] = clickhouse.query(
        "SELECT error_type, reason FROM invalid_events FINAL"
    ).rows
    assert error_type == "EventTimeOutOfRange"
    assert "behind the clock" in reason
