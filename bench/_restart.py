"""How long a worker killed with SIGKILL takes to process again once restarted.

A stream of tool calls flows (live, ~1,000 events/s) while the worker runs as a subprocess
(``agentstream worker --no-sink --no-alerts``), as in production; it is killed with -9
and started again at once with the same identity. The figure: from the kill to the first
batch the new worker commits past the point the old one had committed (fencing, restore
of the changelog, rejoin as a static member, first transaction). Baseline: a cold start
(process start to its first commit).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from agentstream.core.config import Settings, load_settings, settings_env
from agentstream.core.topics import ensure_topics
from agentstream.schemas import CallStatus, ToolCall, encode_model

__all__ = ["RestartBench", "bench_restart"]


@dataclass(frozen=True)
class RestartBench:
    cold_start_s: float
    restart_s: float


def _committed(settings: Settings, consumer: Consumer) -> int:
    topic = settings.topics.name("tool_calls")
    parts = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))


def _wait_past(settings: Settings, consumer: Consumer, mark: int, timeout_s: float) -> float:
    start = time.monotonic()
    while _committed(settings, consumer) <= mark:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"the worker committed nothing past {mark} in {timeout_s} s")
        time.sleep(0.05)
    return time.monotonic() - start


def bench_restart(bootstrap: str, workdir: Path) -> RestartBench:
    tag = uuid.uuid4().hex[:8]
    sections: dict[str, dict[str, Any]] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"prefix": f"bench-restart-{tag}."},
        "worker": {"app_id": f"bench-restart-{tag}", "web_port": 0, "instance_id": "bench-0"},
        "clickhouse": {"path": str(workdir / f"chdb-restart-{tag}")},
    }
    settings = load_settings(**sections)
    ensure_topics(bootstrap, settings.topics.all().values(), partitions=settings.kafka.partitions)
    stop = threading.Event()

    def stream() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        topic = settings.topics.name("tool_calls")
        n = 0
        while not stop.is_set():
            call = ToolCall(
                tenant_id="bench",
                user_id="u",
                agent_id="a",
                agent_version="1",
                run_id=f"run-{n % 500}",
                tool="search",
                status=CallStatus.SUCCESS,
                latency_ms=10.0,
            )
            producer.produce(topic, encode_model(call), call.run_id.encode())
            producer.poll(0)
            n += 1
            time.sleep(0.001)
        producer.flush(10)

    feeder = threading.Thread(target=stream, daemon=True)
    feeder.start()
    env = {**os.environ, **settings_env(sections)}
    command = [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": settings.worker.processors_group}
    )
    worker = subprocess.Popen(command, env=env, **quiet)  # type: ignore[call-overload]
    restarted = None
    try:
        cold = _wait_past(settings, consumer, 0, 120)
        time.sleep(2)
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait()
        mark = _committed(settings, consumer)
        restarted = subprocess.Popen(command, env=env, **quiet)  # type: ignore[call-overload]
        _wait_past(settings, consumer, mark, 120)
        restart = time.monotonic() - killed_at
    finally:
        stop.set()
        for proc in (worker, restarted):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        consumer.close()
    return RestartBench(cold, restart)
