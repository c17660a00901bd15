"""Worker throughput for ``make bench``: the processors on a mixed workload vs decode-only.

Both read the same pre-produced records (simulated runs: transitions, tool
calls, model calls, reviews) from the same broker in the same run; the
baseline is a plain confluent-kafka consumer that only decodes them (the
Python ceiling on this machine).
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer

from agentstream.core.catalog import AGENT_EVENTS
from agentstream.core.config import Settings, load_settings
from agentstream.core.topics import ensure_topics
from agentstream.processors.engine._engine import ProcessorEngine
from agentstream.schemas import (
    AgentEvent,
    encode_model,
)
from agentstream.schemas import decode_model as _decode
from agentstream.worker import ensure_changelog
from bench._harness import process_cpu_s

__all__ = ["WorkerBench", "bench_worker"]

_STREAM = {model: s.name for model, s in AGENT_EVENTS.items()}


@dataclass(frozen=True)
class WorkerBench:
    """Events/s of the worker and of the decode-only baseline over the same records."""

    events: int
    worker_events_per_s: float
    decode_only_events_per_s: float
    #: the input topics the records are on (a peer reads the same ones)
    topics: tuple[str, ...] = ()
    #: CPU µs an event of this process (all its threads) running the worker / the baseline
    worker_cpu_us: float = math.nan
    decode_only_cpu_us: float = math.nan
    #: the broker's CPU µs an event while each ran (NaN: the bench did not start it)
    broker_worker_us: float = math.nan
    broker_decode_only_us: float = math.nan

    def timeline_point(self) -> dict[str, float]:
        return {
            "worker_events_per_s": self.worker_events_per_s,
            "decode_only_events_per_s": self.decode_only_events_per_s,
        }


def _produce(settings: Settings, events: list[AgentEvent]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    for event in events:
        topic = settings.topics.name(_STREAM[type(event)])
        while True:
            try:
                producer.produce(topic, encode_model(event), event.run_id.encode())
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(120)


def _decode_only(settings: Settings, total: int) -> float:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"bench-decode-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.topics.name(s) for s in _STREAM.values()])
    seen = 0
    start: float | None = None
    while seen < total:
        for message in consumer.consume(2_000, 1.0):
            value = message.value()
            if message.error() or value is None:
                continue
            start = start or time.perf_counter()
            _decode(value)
            seen += 1
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    return seen / elapsed if elapsed else 0.0


def _cpu_s(broker_pid: int | None) -> tuple[float, float]:
    """CPU seconds so far of this process and of the broker (NaN without its pid)."""
    return time.process_time(), process_cpu_s(broker_pid) if broker_pid else math.nan


def bench_worker(
    bootstrap: str, *, events: int = 50_000, broker_pid: int | None = None
) -> WorkerBench:
    """Produce ``events`` mixed events, then time the decode-only baseline and the worker;
    the CPU each used, and the broker's (``broker_pid``) behind each, per event."""
    from agentstream.devtools.simulate import Simulation, SimulationConfig

    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"prefix": f"bench-worker-{uuid.uuid4().hex[:8]}."},
        worker={"app_id": f"bench-{uuid.uuid4().hex[:8]}"},
    )
    ensure_topics(bootstrap, settings.topics.all().values(), partitions=settings.kafka.partitions)
    sim = Simulation(SimulationConfig(duration_s=None, max_events=events, runs_per_s=2_000))
    workload = [event for _, event in sim.events()]
    _produce(settings, workload)
    before = _cpu_s(broker_pid)
    baseline = _decode_only(settings, len(workload))
    between = _cpu_s(broker_pid)

    engine = ProcessorEngine(settings)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    start: float | None = None
    try:
        while engine.stats.consumed < len(workload):
            if engine.poll(1.0) and start is None:
                start = time.perf_counter()
        # the merge stage's last rollups come a transaction later: count them in
        deadline = time.monotonic() + 60
        while not engine.settled and time.monotonic() < deadline:
            engine.poll(0.2)
        elapsed = time.perf_counter() - (start or time.perf_counter())
        after = _cpu_s(broker_pid)
    finally:
        engine.close()
    rate = engine.stats.consumed / elapsed if elapsed else 0.0
    n = max(len(workload), 1)
    # the topics the workload wrote to (a peer's job over empty topics only lengthens its
    # internal topic names: Quix names its repartition topic after all of them)
    inputs = tuple(sorted({settings.topics.name(_STREAM[type(e)]) for e in workload}))
    return WorkerBench(
        len(workload),
        rate,
        baseline,
        inputs,
        worker_cpu_us=1e6 * (after[0] - between[0]) / n,
        decode_only_cpu_us=1e6 * (between[0] - before[0]) / n,
        broker_worker_us=1e6 * (after[1] - between[1]) / n,
        broker_decode_only_us=1e6 * (between[1] - before[1]) / n,
    )
