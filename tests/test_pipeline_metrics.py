"""Pipeline metrics through the real broker and engine: each figure against ground truth.

Ground truth is what this test sent (counted here), what the output topics hold
(read back committed) and what ClickHouse stores (``count()``), never the
components' own counters.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from agentstream import Emitter, run_context
from agentstream.core.config import load_settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.schemas import encode_model
from agentstream.sinks.alerting import AlertDispatcher, Notifier, build_channels
from agentstream.sinks.alerting.testing import Receiver
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkWorker
from agentstream.testing import RecordedMetrics
from tests.support import records
from tests.support.engine import engine_settings, read_committed, run_engine

pytestmark = pytest.mark.integration

RUNS = 40


@pytest.fixture
def recorded() -> Iterator[RecordedMetrics]:
    recorded = RecordedMetrics()
    yield recorded
    recorded.shutdown()


def test_processor_and_sink_metrics_match_what_happened(
    kafka_broker: BrokerHandle,
    clickhouse: ClickHouseBackend,
    recorded: RecordedMetrics,
    tmp_path: Any,
) -> None:
    # windows close once the input is quiet for a second, so rollups come out too
    settings = engine_settings(
        kafka_broker,
        emitter={"spool_dir": tmp_path / "spool"},
        rollups={"idle_after_s": 1, "allowed_lateness_s": 0},
    )
    topics = settings.topics
    sent: Counter[str] = Counter()
    emitter = Emitter(settings, replay_on_start=False)
    recorded.metrics.watch(emitter)
    for n in range(RUNS):
        with run_context(tenant_id="acme", agent_id="planner", agent_version="1.0"):
            emitter.transition("INIT")
            emitter.transition("PREPARING")
            if n % 10 == 0:  # skips EXECUTING and REVIEWING: rejected
                emitter.transition("COMPLETED")
                sent["transitions"] += 3
                continue
            emitter.transition("EXECUTING")
            with emitter.tool_call("search"):
                pass
            emitter.transition("REVIEWING")
            emitter.transition("COMPLETED")
            sent["transitions"] += 5
            sent["tool_calls"] += 1
    assert emitter.flush(30) == 0
    emitter.close()
    junk = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    junk.produce(topics.name("transitions"), b"not avro", b"run-junk")
    assert junk.flush(10) == 0

    delivered = recorded.values("agentstream.emitter.events")
    for stream, count in sent.items():
        assert delivered[(("outcome", "delivered"), ("topic", topics.name(stream)))] == count

    total = sum(sent.values()) + 1
    backlog: list[float] = []

    def done(engine: ProcessorEngine) -> bool:
        backlog.append(recorded.total("agentstream.consumer.lag"))
        # settled: the merge stage read what stage 1 sent (the partials topic is part of
        # the group's lag too)
        return engine.stats.consumed == total and engine.stats.rollups > 0 and engine.settled

    # small batches: the consumer reads ahead of what it has processed, a visible backlog
    run_engine(settings, done, metrics=recorded.metrics, batch_size=20)

    consumed = recorded.values("agentstream.events.consumed")
    assert consumed[(("stage", "processors"), ("topic", topics.name("transitions")))] == (
        sent["transitions"] + 1
    )
    assert (
        consumed[(("stage", "processors"), ("topic", topics.name("tool_calls")))]
        == (sent["tool_calls"])
    )
    for stream in ("lifecycle", "invalid", "rollups"):
        committed = len(read_committed(settings, stream))
        assert committed > 0, stream
        produced = recorded.total(
            "agentstream.events.produced", stage="processors", topic=topics.name(stream)
        )
        assert produced == committed, stream
    invalid = recorded.values("agentstream.events.invalid")
    source = topics.name("transitions")
    assert invalid == {
        (("error_type", "InvalidTransition"), ("stage", "processors"), ("topic", source)): RUNS
        // 10,
        (("error_type", "CodecError"), ("stage", "processors"), ("topic", source)): 1,
    }
    # the backlog was seen, and read to the end
    assert max(backlog) > 0
    assert backlog[-1] == 0
    # a closed consumer stops reporting
    assert recorded.values("agentstream.consumer.lag") == {}

    lifecycle = len(read_committed(settings, "lifecycle"))
    expected = Counter(
        {
            "tool_calls": sent["tool_calls"],
            "state_transitions": lifecycle,
            "invalid_events": len(read_committed(settings, "invalid")),
        }
    )
    for rollup in read_committed(settings, "rollups"):
        expected[f"rollups_{rollup.resolution}"] += 1
    # ended runs sampled for review (review.sample_rate of random run ids: sometimes none)
    if reviews := len(read_committed(settings, "review_requests")):
        expected["review_queue"] = reviews
    sink = SinkWorker(settings, backend=clickhouse, metrics=recorded.metrics)
    sink.run_until(lambda s: all(s.stored.get(t, 0) >= n for t, n in expected.items()), 60)
    group = settings.sink.consumer_group

    def drained(stats: Any) -> bool:  # everything read, and a lag of 0 reported for it
        lag = recorded.metrics.lag(group)
        return stats.consumed >= sum(expected.values()) and set(lag.values()) == {0}

    sink.run_until(drained, 30)
    lag = recorded.metrics.lag(group)
    sink.close()
    for table, count in expected.items():
        rows = clickhouse.query(f"SELECT count() FROM {table}").scalar()
        assert rows == count, table
        assert recorded.total("agentstream.sink.rows", table=table) == rows, table
    batches = recorded.values("agentstream.sink.batch.duration")
    assert sum(batches.values()) >= len(expected)  # at least one batch per table
    assert {dict(key)["outcome"] for key in batches} == {"ok"}
    assert {dict(key)["table"] for key in batches} == set(expected)
    on_lifecycle = recorded.total(
        "agentstream.events.consumed", stage="sink", topic=topics.name("lifecycle")
    )
    assert on_lifecycle == lifecycle
    assert lag
    assert set(lag.values()) == {0}


def test_alert_deliveries_are_counted_by_outcome(
    kafka_broker: BrokerHandle, recorded: RecordedMetrics
) -> None:
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topics([topic], 1)
    start = dt.datetime(2026, 11, 1, 9, tzinfo=dt.UTC)
    alert = records.alert(
        rule_id="error_rate", scope_key="tool=search", value=0.2, message="error rate 20 % > 5 %",
        channels=("webhook", "pager"), **records.window(start),
    )  # fmt: skip
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    producer.produce(topic, encode_model(alert), b"error_rate")
    assert producer.flush(10) == 0

    with Receiver(statuses=(503,)) as receiver:  # the first attempt fails, the retry lands
        settings = load_settings(
            kafka={"bootstrap_servers": kafka_broker.bootstrap},
            alerts={
                "webhook_url": receiver.url,
                "consumer_group": f"alerts-{uuid.uuid4().hex[:8]}",
                "delivery_backoff_s": 0.01,
            },
        )
        notifier = Notifier(
            build_channels(settings.alerts), settings.alerts, metrics=recorded.metrics
        )
        dispatcher = AlertDispatcher(settings, notifier, topic=topic, metrics=recorded.metrics)
        for _ in range(120):
            if dispatcher.poll(0.5):
                break
        assert notifier.flush(30)
        dispatcher.close()
        notifier.close()
        assert len(receiver.accepted()) == 1

    assert recorded.values("agentstream.alerts.notifications") == {
        (("channel", "webhook"), ("outcome", "delivered")): 1,
        (("channel", "pager"), ("outcome", "skipped")): 1,  # no such channel configured
    }
    assert recorded.values("agentstream.alerts.delivery_retries") == {(("channel", "webhook"),): 1}
    assert recorded.values("agentstream.events.consumed") == {
        (("stage", "alerts"), ("topic", topic)): 1
    }
