"""End-to-end latency: ``emit`` → the row is visible in ClickHouse, through a real worker.

A worker runs in a child process against the bench's broker, with its own
embedded ClickHouse folder; visibility is checked through the worker's web
port (the folder is the worker's while it runs). Baseline: the Kafka round
trip alone (produce → a plain consumer receives it), measured in the same run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

from agentstream.core.config import Settings, load_settings, settings_env
from bench._harness import BenchContext, percentile

__all__ = ["EndToEnd", "measure_end_to_end"]

_SAMPLES = 40
_POLL_S = 0.02
_VISIBLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class EndToEnd:
    p50_ms: float
    p99_ms: float
    kafka_p50_ms: float
    kafka_p99_ms: float


def _kafka_round_trip(settings: Settings, samples: int) -> list[float]:
    from confluent_kafka import Consumer, Producer

    from agentstream.core.topics import ensure_topics

    topic = f"{settings.topics.prefix}roundtrip"
    ensure_topics(settings.kafka.bootstrap_servers, [topic])
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 0})
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"bench-rt-{uuid.uuid4().hex[:6]}",
            # the topic is new: from the start, so no record is missed while joining
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 10,
        }
    )
    consumer.subscribe([topic])
    while not consumer.assignment():
        consumer.poll(0.1)
    latencies = []
    for i in range(samples):
        sent = time.perf_counter()
        producer.produce(topic, str(i).encode())
        producer.flush(10)
        deadline = time.monotonic() + _VISIBLE_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError("the round-trip probe never came back")
            message = consumer.poll(1)
            if message is not None and not message.error() and message.value() == str(i).encode():
                break
        latencies.append((time.perf_counter() - sent) * 1000)
    consumer.close()
    return latencies


def measure_end_to_end(ctx: BenchContext, settings: Settings) -> EndToEnd:
    """Start a worker, emit one traced tool call at a time, wait until the sink stored it."""
    from agentstream import Emitter, run_context
    from agentstream.devtools.localstack._system import free_ports
    from agentstream.sinks.analyst import HttpAnalyst, KeyStore

    port = free_ports("127.0.0.1", 1)[0]
    keys_file = ctx.workdir / f"e2e-keys-{port}.json"
    _, secret = KeyStore(keys_file).create("bench", "admin")
    ready = ctx.workdir / f"e2e-{port}.ready"
    overrides: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": ctx.bootstrap},
        "topics": {"prefix": settings.topics.prefix},
        "clickhouse": {"path": ctx.workdir / f"e2e-chdb-{port}"},
        "worker": {
            "app_id": f"bench-e2e-{port}",
            "web_port": port,
            "data_dir": ctx.workdir / f"e2e-worker-{port}",
            "ready_file": ready,
        },
        "sink": {"flush_interval_s": 0.2},
        "analyst": {"keys_file": keys_file},
        "emitter": {"spool_dir": ctx.workdir / f"e2e-spool-{port}", "linger_ms": 0},
    }
    settings = load_settings(**overrides)
    log = (ctx.workdir / f"e2e-worker-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentstream", "worker", "--log-level", "warning"],
        env={**os.environ, **settings_env(overrides)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bench worker did not start (log: {log.name})")
            time.sleep(0.2)
        analyst = HttpAnalyst(f"http://127.0.0.1:{port}", "bench", secret)
        emitter = Emitter(settings, replay_on_start=False)

        latencies = []
        with run_context(tenant_id="bench", agent_id="e2e", agent_version="1"):
            for _ in range(_SAMPLES):
                with emitter.tool_call("probe") as call:
                    call.result_summary = "ok"
                    sent = time.perf_counter()  # the event is emitted as the block ends
                event_id = call.event.event_id if call.event is not None else ""
                emitter.flush(10)
                sql = f"SELECT count() FROM tool_calls WHERE event_id = '{event_id}'"
                while analyst.query(sql).scalar() != 1:
                    if time.perf_counter() - sent > _VISIBLE_TIMEOUT_S:
                        raise RuntimeError(f"event {event_id} never became visible")
                    time.sleep(_POLL_S)
                latencies.append((time.perf_counter() - sent) * 1000)
                ctx.mark("e2e", latency_ms=latencies[-1])
        emitter.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    kafka = _kafka_round_trip(settings, _SAMPLES)
    return EndToEnd(
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        kafka_p50_ms=percentile(kafka, 0.5),
        kafka_p99_ms=percentile(kafka, 0.99),
    )
