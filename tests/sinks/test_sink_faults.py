"""Fault injection: the sink against the real broker and the real engine, failing on command.

ClickHouse is stopped, slowed down and made to refuse rows (:class:`FlakyBackend` around
the embedded engine); the consumer hands back error events while records are held under
back-pressure; a second sink joins and leaves the group during the pause; the loop
crashes and is restarted. Every time, each produced record must end up stored exactly
once by event_id (or dead-lettered, when refused), and the committed offsets must cover
everything produced.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import ToolCall, encode_model
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkWorker
from tests.support.clickhouse import BackendBug, FlakyBackend

pytestmark = pytest.mark.integration

PARTITIONS = 3
TIMEOUT_S = 90.0
NOW = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
#: how long an over-fetching consume gathers records that are still arriving
OVERFETCH_WAIT_S = 3.0
COOPERATIVE = {"partition.assignment.strategy": "cooperative-sticky"}


def make_settings(broker: BrokerHandle) -> Settings:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
        topics={"prefix": f"faults.{tag}."},
        sink={
            "consumer_group": f"sink-{tag}",
            "batch_size": 20,
            "max_buffered_rows": 30,
            "flush_interval_s": 0.2,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.3,
        },
    )
    broker.create_topics(list(settings.topics.all().values()), PARTITIONS)
    return settings


def calls(first: int, count: int) -> list[ToolCall]:
    return [
        ToolCall(
            tenant_id=f"tenant-{i % 3}",
            user_id="u",
            agent_id="agent",
            agent_version="1",
            run_id=f"run-{i % 40}",
            event_time=NOW + dt.timedelta(milliseconds=i),
            tool=f"t{i % 5}",
            status="SUCCESS",
            latency_ms=float(i),
        )
        for i in range(first, first + count)
    ]


def produce(broker: BrokerHandle, settings: Settings, records: Sequence[ToolCall]) -> None:
    producer = Producer(broker.client_config({"linger.ms": 5}))
    topic = settings.topics.name("tool_calls")
    for record in records:
        producer.produce(topic, key=record.run_id.encode(), value=encode_model(record))
    assert producer.flush(30) == 0


def committed(broker: BrokerHandle, settings: Settings) -> int:
    """Offsets the sink's group committed on the tool_calls topic, all partitions together."""
    consumer = Consumer(
        broker.client_config(
            {"group.id": settings.sink.consumer_group, "enable.auto.commit": False}
        )
    )
    try:
        topic = settings.topics.name("tool_calls")
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=30))
    finally:
        consumer.close()


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = TIMEOUT_S,
    info: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            extra = f" ({info()})" if info is not None else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(0.05)


def stored_ids(backend: ClickHouseBackend) -> list[str]:
    """event_ids in tool_calls after deduplication (FINAL), one entry per stored row."""
    rows = backend.query("SELECT toString(event_id) FROM tool_calls FINAL").rows
    return [row[0] for row in rows]


def count(backend: ClickHouseBackend, sql: str) -> int:
    return int(backend.query(sql).scalar())


class _ErrorEvent:
    """What ``consume`` hands back for a transient error: a message whose ``error()`` is set."""

    def __init__(self) -> None:
        self._error = KafkaError(KafkaError._TRANSPORT, "injected: broker connection lost")

    def error(self) -> KafkaError:
        return self._error


class _InjectingConsumer:
    """The real consumer; ``inject(n)`` makes the next ``consume`` also return n error events.

    ``overfetch = k`` asks the broker for ``k`` records more than the sink asked for, as
    when a partition's pause has not taken effect yet (the records are real, with real
    positions): the sink cannot take them all and has to hold some.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.pending = 0
        self.injected = 0
        self.overfetch = 0

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Any]:
        wanted = num_messages + self.overfetch
        messages = list(self._inner.consume(num_messages=wanted, timeout=timeout))
        # records trickle in while the test produces: gather the over-fetch (real records
        # only, and only once some came; a paused consumer gets none and waits no longer)
        deadline = time.monotonic() + OVERFETCH_WAIT_S
        while self.overfetch and 0 < len(messages) < wanted and time.monotonic() < deadline:
            messages += self._inner.consume(num_messages=wanted - len(messages), timeout=0.1)
        if self.pending:
            # the error events come first: they must not touch what is held or just read
            messages = [_ErrorEvent() for _ in range(self.pending)] + messages
            self.injected += self.pending
            self.pending = 0
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class InjectingWorker(SinkWorker):
    """A sink worker whose consumer hands back error events on command."""

    injector: _InjectingConsumer | None = None
    #: the injector's ``overfetch`` from the first ``consume`` on
    overfetch = 0

    def open(self) -> None:
        super().open()
        if not isinstance(self._consumer, _InjectingConsumer):
            self.injector = _InjectingConsumer(self._consumer)
            self.injector.overfetch = self.overfetch
            self._consumer = self.injector

    def inject(self, events: int) -> None:
        assert self.injector is not None
        self.injector.pending += events


def error_of(worker: SinkWorker) -> BaseException | None:
    return worker.error


def held(worker: SinkWorker) -> int:
    return len(worker._held)


def test_error_events_while_paused_lose_nothing(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    flaky = FlakyBackend(clickhouse)
    worker = InjectingWorker(settings, backend=flaky, streams=["tool_calls", "invalid"])
    first, second, third = calls(0, 100), calls(100, 200), calls(300, 100)
    refused = {c.event_id for c in third[::20]}  # 5 rows ClickHouse refuses
    # fault 1: ClickHouse is down from the start and 300 records wait: the sink fills up,
    # pauses and holds what it read beyond its room
    flaky.stop()
    produce(kafka_broker, settings, first + second)
    worker.overfetch = 7
    worker.start()
    try:
        wait_for(lambda: worker.stats.pauses >= 1 and held(worker) > 0, "a pause, records held")
        most_held = held(worker)
        for _ in range(3):  # fault 2: error events from the consumer while records are held
            before = held(worker)
            worker.inject(2)
            wait_for(lambda: worker.injector is not None and worker.injector.pending == 0, "errors")
            assert held(worker) >= before  # nothing held was dropped
        assert worker.injector is not None
        injected = worker.injector.injected
        failures_while_down = flaky.failed

        flaky.slow(0.05)  # fault 3: ClickHouse back, but slow
        flaky.refuse(lambda _t, row: str(row[0]) in refused)  # fault 4: it refuses 5 rows
        flaky.start()
        produce(kafka_broker, settings, third)
        worker.inject(2)  # and one more error event while draining
        total = len(first) + len(second) + len(third)
        wait_for(lambda: committed(kafka_broker, settings) >= total, "every offset committed")
        wait_for(
            lambda: count(clickhouse, "SELECT count() FROM invalid_events FINAL") >= len(refused),
            "the refused rows stored as dead letters",
        )
    finally:
        worker.stop()
    assert worker.error is None
    produced = {c.event_id for c in first + second + third}
    stored = stored_ids(clickhouse)
    raw_rows = count(clickhouse, "SELECT count() FROM tool_calls")
    print(
        f"\nFAULTS error-events: produced={len(produced)} refused={len(refused)} "
        f"insert failures while down={failures_while_down} pauses={worker.stats.pauses} "
        f"held at the pause={most_held} error events injected={injected + 2} "
        f"stored FINAL={len(stored)} "
        f"distinct={len(set(stored))} raw rows={raw_rows} "
        f"dead-lettered={worker.stats.dead_lettered} committed={committed(kafka_broker, settings)}"
    )
    assert len(stored) == len(set(stored)) == len(produced) - len(refused)
    assert set(stored) == produced - refused
    assert committed(kafka_broker, settings) == len(produced)
    assert worker.stats.dead_lettered == len(refused)
    letters = clickhouse.query("SELECT toString(event_id), reason FROM invalid_events FINAL").rows
    assert {row[0] for row in letters} == refused
    assert all("INCORRECT_DATA" in row[1] for row in letters)


def test_a_rebalance_during_a_pause_keeps_order_and_positions(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    """Cooperative rebalancing: partitions are revoked from and assigned to a paused sink."""
    settings = make_settings(kafka_broker)
    flaky = FlakyBackend(clickhouse)
    paused = InjectingWorker(
        settings, backend=flaky, streams=["tool_calls"], consumer_config=COOPERATIVE
    )
    helper = SinkWorker(
        settings, backend=clickhouse, streams=["tool_calls"], consumer_config=COOPERATIVE
    )
    first, second, third = calls(0, 300), calls(300, 300), calls(600, 60)
    most_held = [0]

    def holding() -> int:
        most_held[0] = max(most_held[0], held(paused))
        return most_held[0]

    paused.overfetch = 7
    flaky.stop()
    produce(kafka_broker, settings, first)
    paused.start()
    try:
        wait_for(lambda: paused.stats.pauses >= 1 and holding() > 0, "a pause, records held")
        # a second sink joins: some partitions are revoked from the paused one ...
        helper.start()
        wait_for(lambda: helper.stats.rows > 0, "the second sink storing its partitions")
        produce(kafka_broker, settings, second)
        # ... and assigned back to it, still paused, when the second one leaves: their
        # records arrive during the pause and are held
        helper.stop()
        assert helper.error is None
        wait_for(
            lambda: len(paused._consumer.assignment()) == PARTITIONS,
            "all partitions back",
            info=lambda: (
                f"assignment={paused._consumer.assignment()} held={held(paused)} "
                f"buffered={paused._sink.buffered if paused._sink else None} stats={paused.stats}"
            ),
        )
        before = held(paused)
        paused.inject(3)  # error events while records are held
        wait_for(lambda: paused.injector is not None and paused.injector.pending == 0, "errors")
        assert held(paused) >= before
        produce(kafka_broker, settings, third)
        flaky.start()
        total = len(first) + len(second) + len(third)
        wait_for(lambda: holding() >= 0 and committed(kafka_broker, settings) >= total, "commits")
    finally:
        helper.stop()
        paused.stop()
    assert paused.error is None
    produced = {c.event_id for c in first + second + third}
    stored = stored_ids(clickhouse)
    print(
        f"\nFAULTS rebalance: produced={len(produced)} stored FINAL={len(stored)} "
        f"by the paused sink={paused.stats.rows} by the helper={helper.stats.rows} "
        f"raw rows={count(clickhouse, 'SELECT count() FROM tool_calls')} "
        f"pauses={paused.stats.pauses} most held={most_held[0]} "
        f"committed={committed(kafka_broker, settings)}"
    )
    assert len(stored) == len(set(stored)) == len(produced)
    assert set(stored) == produced
    assert committed(kafka_broker, settings) == len(produced)


def test_a_crashed_loop_says_so_and_resumes_after_a_restart(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    flaky = FlakyBackend(clickhouse)
    worker = SinkWorker(settings, backend=flaky, streams=["tool_calls"])
    records = calls(0, 200)
    worker.start()
    try:
        assert worker.healthy()
        flaky.crash_next(1)  # fault: an exception nothing in the sink expects
        produce(kafka_broker, settings, records)
        wait_for(lambda: not worker.running, "the loop to end")
        health = worker.health()
        assert not worker.healthy()
        assert isinstance(worker.error, BackendBug)
        assert (health.ok, health.state) == (False, "failed")
        assert "BackendBug" in str(health.reason)
        assert worker.stats.crashes == 1
        before_restart = committed(kafka_broker, settings)

        worker.stop()  # what a supervisor does: stop, start again
        worker.start()
        assert worker.healthy()
        wait_for(lambda: committed(kafka_broker, settings) >= len(records), "all committed")
        assert worker.health().state == "running"
    finally:
        worker.stop()
    assert error_of(worker) is None  # the restarted loop ended cleanly
    assert worker.health().state == "stopped"
    stored = stored_ids(clickhouse)
    print(
        f"\nFAULTS crash: produced={len(records)} committed before restart={before_restart} "
        f"stored FINAL={len(stored)} raw rows={count(clickhouse, 'SELECT count() FROM tool_calls')}"
    )
    assert len(stored) == len(set(stored)) == len(records)
    assert set(stored) == {c.event_id for c in records}
