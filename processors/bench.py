"""Throughput of the worker on a pre-produced mixed workload, beside a decode-only baseline.

    python -m processors.bench --bootstrap 127.0.0.1:9092 [--events 100000] [--partitions 6]

:func:`measure_worker_throughput` produces the mixed workload of
:func:`processors._throughput.workload` (runs with transitions, tool calls, model
calls, reviews; 2 % invalid moves, 1 % redelivered duplicates) into fresh topics,
then measures, in the same run:

* **baseline** — a plain confluent-kafka consumer that reads the same records and
  only decodes + validates them (:func:`schemas.decode_model`): the Python ceiling;
* **worker** — ``python -m processors.worker`` (one process) consuming them: the
  rate at which its consumer group's committed offsets advance, from the first
  commit to the last record (faust start-up and the final idle close excluded).

Returns the numbers; prints nothing unless run as a module. Assertion-free.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from agentstream.config import Settings
from processors._throughput import workload
from processors.worker._gate import INPUT_MODELS
from processors.worker._run import ensure_worker_topics, spawn_worker
from processors.worker.testing import produce, settings_of, worker_overrides
from schemas import decode_model

__all__ = ["main", "measure_worker_throughput"]


def _end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": "bench-probe"})
    try:
        out: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
        return out
    finally:
        consumer.close()


def _baseline(settings: Settings, topics: list[str], total: int) -> float:
    models = {settings.topics.name(s): m for s, m in INPUT_MODELS.items()}
    conf: dict[str, Any] = {
        **settings.kafka.confluent_config(),
        "group.id": f"bench-baseline-{time.time_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    consumer = Consumer(conf)
    consumer.subscribe(topics)
    n = 0
    started: float | None = None
    try:
        while n < total:
            batch = consumer.consume(1000, 1.0)
            if batch and started is None:
                started = time.perf_counter()
            for msg in batch:
                if msg.error():
                    continue
                try:
                    decode_model(msg.value(), models[msg.topic()])
                except Exception:  # noqa: BLE001 - the workload has no bad bytes; count anyway
                    pass
                n += 1
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        consumer.close()
    return n / elapsed if elapsed > 0 else float("nan")


def _committed(settings: Settings, group: str, parts: list[tuple[str, int]]) -> int:
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": group})
    try:
        got = consumer.committed([TopicPartition(t, p) for t, p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in got)
    finally:
        consumer.close()


def measure_worker_throughput(
    bootstrap: str,
    *,
    events: int = 100_000,
    partitions: int = 6,
    seed: int = 1,
    timeout_s: float = 600.0,
    workdir: Path | None = None,
) -> dict[str, float]:
    """Events/s of the worker and of the decode-only baseline on the same records."""
    root = Path(workdir or tempfile.mkdtemp(prefix="agentstream-bench-"))
    overrides = worker_overrides(bootstrap, root / "worker", partitions=partitions)
    overrides["worker"]["session_timeout_s"] = 10
    settings = settings_of(overrides)
    ensure_worker_topics(settings)
    data = workload(events, 20_000.0, seed)
    produced = produce(settings, data)
    topics = [settings.topics.name(s) for s in INPUT_MODELS]
    ends = _end_offsets(settings, topics)
    total = sum(ends.values())
    baseline = _baseline(settings, topics, total)

    proc = spawn_worker(overrides, log_path=root / "worker.log", loglevel="warning")
    group = settings.worker.app_id
    first: tuple[float, int] | None = None
    last: tuple[float, int] = (time.perf_counter(), 0)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and proc.poll() is None:
            done = _committed(settings, group, list(ends))
            now = time.perf_counter()
            if done and first is None:
                first = (now, done)
            last = (now, done)
            if done >= total:
                break
            time.sleep(0.25)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    worker = float("nan")
    if first is not None and last[0] > first[0]:
        worker = (last[1] - first[1]) / (last[0] - first[0])
    return {
        "events": float(produced),
        "records": float(total),
        "consumed": float(last[1]),
        "worker_events_per_s": worker,
        "baseline_decode_events_per_s": baseline,
        "ratio": worker / baseline if baseline else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    result = measure_worker_throughput(
        args.bootstrap, events=args.events, partitions=args.partitions
    )
    for name, value in result.items():
        print(f"{name:<32} {value:>12,.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
