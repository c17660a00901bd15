"""Test support for the processors: settings, producing input, reading committed output.

Shipped beside the engine (like ``agentstream.devtools.localstack.testing``) so tests and
benchmarks drive the real thing against a real broker.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from agentstream.core import kafka
from agentstream.core.config import Settings, load_settings
from agentstream.core.metrics import PipelineMetrics
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine._engine import ProcessorEngine
from agentstream.schemas import decode_model
from agentstream.worker import ensure_changelog

__all__ = ["committed_lag", "engine_settings", "produce", "read_committed", "run_engine"]


def engine_settings(broker: BrokerHandle, *, partitions: int = 3, **overrides: Any) -> Settings:
    """Settings for one test: unique topics and app id, short REVIEWING budget, topics created."""
    tag = uuid.uuid4().hex[:8]
    sections: dict[str, Any] = {
        "kafka": {"bootstrap_servers": broker.bootstrap, "partitions": partitions},
        "topics": {"prefix": f"eng-{tag}."},
        "worker": {"app_id": f"eng-{tag}"},
        "lifecycle": {"reviewing_budget_s": 2, "timeout_grace_s": 0.5, "idle_after_s": 1},
        "rollups": {"idle_after_s": 3600, "allowed_lateness_s": 30},
    }
    for section, values in overrides.items():
        sections[section] = {**sections.get(section, {}), **values}
    settings = load_settings(**sections)
    broker.create_topics(list(settings.topics.all().values()), partitions=partitions)
    return settings


def produce(settings: Settings, records: list[tuple[str, str, bytes]]) -> None:
    """``(stream, key, value)`` in order, keyed like the Emitter (murmur2), idempotent like
    it: a plain producer may reorder a partition's records when a request is retried (a
    run's PREPARING after its later events), which no emitter of the project does. A
    record the broker did not take raises (``flush`` alone counts it as done)."""
    # librdkafka's own delivery timeout (the Emitter's 30 s spools; a test has no spool)
    producer = kafka.producer(settings, "emitter", {"delivery.timeout.ms": 300_000})
    failed: list[str] = []

    def report(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(error.str())

    for stream, key, value in records:
        while True:
            try:
                producer.produce(
                    settings.topics.name(stream), value, key.encode(), on_delivery=report
                )
                break
            except BufferError:  # the queue is full: let deliveries make room
                producer.poll(0.1)
    if producer.flush(330):
        raise TimeoutError("records still unsent after 330 s")
    if failed:
        raise RuntimeError(f"{len(failed)} records not delivered, e.g. {failed[0]}")


def committed_lag(
    settings: Settings, streams: tuple[str, ...] = ("transitions", "tool_calls")
) -> int:
    """Input records of ``streams`` not yet committed by the processors' group."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": settings.worker.processors_group,
            "enable.auto.commit": False,
            # read_committed asks for stable offsets: the broker holds the answer while a
            # SIGKILLed worker's transaction is open (up to its timeout); the last committed
            # offsets are what the lag is counted from anyway
            "isolation.level": "read_uncommitted",
        }
    )
    try:
        lag = 0
        for stream in streams:
            topic = settings.topics.name(stream)
            parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
            for tp in consumer.committed(parts, timeout=30):
                _, high = consumer.get_watermark_offsets(tp, timeout=30)
                lag += high - max(tp.offset, 0)
        return lag
    finally:
        consumer.close()


def read_committed(settings: Settings, stream: str) -> list[Any]:
    """Every committed record of an output topic, decoded."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    topic = settings.topics.name(stream)
    consumer.subscribe([topic])
    records: list[Any] = []
    idle = 0
    while idle < 6:
        batch = consumer.consume(1000, 0.5)
        records.extend(decode_model(v) for m in batch if not m.error() and (v := m.value()))
        idle = 0 if batch else idle + 1
    consumer.close()
    return records


def run_engine(
    settings: Settings,
    until: Callable[[ProcessorEngine], bool],
    timeout_s: float = 90.0,
    settle_s: float = 1.5,
    metrics: PipelineMetrics | None = None,
    batch_size: int = 2_000,
) -> ProcessorEngine:
    """An engine in this thread, polled until ``until(engine)``, then ``settle_s`` more
    (so a timer sweep runs after the last record)."""
    engine = ProcessorEngine(settings, metrics=metrics, batch_size=batch_size)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    deadline = time.monotonic() + timeout_s
    try:
        while not until(engine):
            if time.monotonic() > deadline:
                open_runs = [
                    r for r in engine._runs.values() if r["state"] not in ("COMPLETED", "FAILED")
                ]
                raise TimeoutError(
                    f"the engine did not get there: {engine.stats} {engine.health()} "
                    f"open runs: {open_runs[:3]}; clocks {engine._clocks.to_json()}"
                )
            engine.poll(0.3)
        while not engine.settled:  # the merge stage has the rollups of what was read
            if time.monotonic() > deadline:
                raise TimeoutError(f"the merge stage did not catch up: {engine.health()}")
            engine.poll(0.3)
        settle = time.monotonic() + settle_s
        while time.monotonic() < settle:
            engine.poll(0.3)
    finally:
        engine.close()
    return engine
