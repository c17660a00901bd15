"""Scale-out of the processors for ``make bench``: one worker process vs two, and what a
rebalance costs.

* **Throughput.** The same pre-produced mixed workload (6 partitions) is read by one
  ``agentstream worker --no-sink --no-alerts`` process, then (another consumer group, the
  same topics) by two. Events/s from the moment every process holds partitions (the
  joins' own cost is the rebalance figure) to the group's last commit; per partition, its
  records over the time its committed offsets took to reach its end (sampled).
* **Rebalance.** Live traffic (tool calls, ~1,000/s) with one worker; a second worker
  joins: from its start to every partition committing again; then the second worker is
  SIGKILLed: from the kill to every partition committing again (its static membership
  holds its partitions for ``session.timeout.ms``, its open transaction blocks its
  partitions' changelog until ``transaction.timeout.ms``). Baseline: a cold start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from agentstream.core.config import Settings, load_settings, settings_env
from agentstream.core.topics import ensure_topics
from agentstream.schemas import CallStatus, ToolCall, encode_model
from bench._engine import _produce
from bench._harness import Figure, machine_busy_s, process_cpu_s

__all__ = [
    "CpuUse",
    "RebalanceBench",
    "ScaleBench",
    "bench_rebalance",
    "bench_scale",
    "cpu_figures",
]

_PARTITIONS = 6
_INPUTS = ("transitions", "tool_calls", "model_calls", "reviews")
_COMMAND = [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"]
_QUIET: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}


@dataclass(frozen=True)
class CpuUse:
    """Cores busy over a drain's steady window (CPU seconds per wall second)."""

    #: the worker processes together (all their threads: Python and librdkafka)
    workers: float
    #: the whole machine (/proc/stat: the broker, the workers, anything else running)
    machine: float
    #: the workers' CPU microseconds per event
    worker_us_per_event: float
    #: the whole machine's CPU microseconds per event (the broker's share included)
    machine_us_per_event: float


@dataclass(frozen=True)
class ScaleBench:
    events: int
    #: events/s of the whole group
    one_process: float
    two_processes: float
    #: mean over partitions of records/s while the partition was being read
    per_partition_one: float
    per_partition_two: float
    cpu_one: CpuUse | None = None
    cpu_two: CpuUse | None = None
    cores: int = 0


class _CpuMeter:
    """CPU use of the worker processes and of the machine between two readings."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self._procs = procs
        self._at: tuple[float, float, float] | None = None

    def _read(self) -> tuple[float, float, float]:
        workers = sum(process_cpu_s(p.pid) for p in self._procs)
        return time.monotonic(), workers, machine_busy_s()

    def start(self) -> None:
        self._at = self._read()

    def since_start(self, events: int) -> CpuUse | None:
        if self._at is None:
            return None
        t0, w0, m0 = self._at
        t1, w1, m1 = self._read()
        wall = t1 - t0
        if wall <= 0 or w1 <= w0:
            return None
        n = max(events, 1)
        return CpuUse((w1 - w0) / wall, (m1 - m0) / wall, 1e6 * (w1 - w0) / n, 1e6 * (m1 - m0) / n)


@dataclass(frozen=True)
class RebalanceBench:
    cold_start_s: float
    join_s: float
    leave_s: float


def _sections(bootstrap: str, workdir: Path, prefix: str, app: str, name: str) -> Any:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "partitions": _PARTITIONS},
        "topics": {"prefix": prefix},
        "worker": {"app_id": app, "web_port": 0, "instance_id": name},
        "clickhouse": {"path": str(workdir / f"chdb-{app}-{name}")},
    }


def _start(sections: Any) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(sections)}
    return subprocess.Popen(_COMMAND, env=env, **_QUIET)


class _Offsets:
    """The group's committed offsets and the topics' ends, per input partition."""

    def __init__(self, settings: Settings, streams: tuple[str, ...] = _INPUTS) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "group.id": settings.worker.processors_group,
                "enable.auto.commit": False,
            }
        )
        self._parts = [
            TopicPartition(settings.topics.name(s), p) for s in streams for p in range(_PARTITIONS)
        ]

    def committed(self) -> dict[tuple[str, int], int]:
        # a dead worker's open transaction holds its partitions' offsets unstable (KIP-447)
        # until the broker aborts it: the fetch times out meanwhile, ask again
        deadline = time.monotonic() + 180
        while True:
            try:
                parts = self._consumer.committed(self._parts, timeout=10)
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                continue
            return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in parts}

    def ends(self) -> dict[tuple[str, int], int]:
        out = {}
        for tp in self._parts:
            _, high = self._consumer.get_watermark_offsets(tp, timeout=10)
            out[(tp.topic, tp.partition)] = high
        return out

    def close(self) -> None:
        self._consumer.close()


def _wait(condition: Callable[[], bool], what: str, timeout_s: float) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"bench: gave up waiting for {what} after {timeout_s:g} s")
        time.sleep(0.05)
    return time.monotonic() - start


def _drain(
    bootstrap: str, workdir: Path, prefix: str, workers: int
) -> tuple[float, float, CpuUse | None]:
    """Events/s of ``workers`` processes over the topics, the mean per-partition rate, and
    the CPU they and the machine used in the steady window."""
    app = f"bench-scale-{uuid.uuid4().hex[:8]}"
    settings = load_settings(**_sections(bootstrap, workdir, prefix, app, "w0"))
    offsets = _Offsets(settings)
    ends = offsets.ends()
    total = sum(ends.values())
    procs = [_start(_sections(bootstrap, workdir, prefix, app, f"w{i}")) for i in range(workers)]
    meter = _CpuMeter(procs)
    cpu: CpuUse | None = None
    first: float | None = None
    done_at: dict[tuple[str, int], float] = {}
    began: dict[int, float] = {}
    #: when every worker held partitions, and the records committed by then
    stable: tuple[float, int] | None = None
    next_look = 0.0
    try:
        deadline = time.monotonic() + 600
        while len(done_at) < len(ends):
            if time.monotonic() > deadline:
                raise TimeoutError("bench: the workers did not read the workload in 600 s")
            now = time.monotonic()
            committed = offsets.committed()
            for key, offset in committed.items():
                if offset > 0:
                    first = first or now
                    began.setdefault(key[1], now)
                if offset >= ends[key] and key not in done_at:
                    done_at[key] = now
            if stable is None and now >= next_look:
                next_look = now + 0.5
                if _has_members(settings, workers):
                    stable = (now, sum(max(0, o) for o in committed.values()))
                    meter.start()
            time.sleep(0.1)
        if stable is not None:
            cpu = meter.since_start(total - stable[1])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        offsets.close()
    last = max(done_at.values())
    if stable is not None and last - stable[0] > 1.0:
        # steady state: from the moment every worker held partitions (the joins' own cost
        # is the rebalance figure)
        rate = (total - stable[1]) / (last - stable[0])
        return rate, _per_partition(ends, done_at, began), cpu
    elapsed = last - (first or 0.0)
    rate = total / elapsed if elapsed else 0.0
    return rate, _per_partition(ends, done_at, began, first), None


def _per_partition(
    ends: dict[tuple[str, int], int],
    done_at: dict[tuple[str, int], float],
    began: dict[int, float],
    first: float | None = None,
) -> float:
    """The mean per-partition rate: its records over the time its commits took."""
    rates = []
    for p in range(_PARTITIONS):
        records = sum(v for (_, q), v in ends.items() if q == p)
        finished = max(t for (_, q), t in done_at.items() if q == p)
        rates.append(records / max(finished - began.get(p, first or 0.0), 0.1))
    return sum(rates) / len(rates)


def bench_scale(bootstrap: str, workdir: Path, *, events: int = 50_000) -> ScaleBench:
    """One process vs two on the same mixed workload (see the module doc)."""
    from agentstream.devtools.simulate import Simulation, SimulationConfig

    prefix = f"bench-scale-{uuid.uuid4().hex[:8]}."
    settings = load_settings(kafka={"bootstrap_servers": bootstrap}, topics={"prefix": prefix})
    ensure_topics(bootstrap, settings.topics.all().values(), partitions=_PARTITIONS)
    sim = Simulation(SimulationConfig(duration_s=None, max_events=events, runs_per_s=2_000))
    workload = [event for _, event in sim.events()]
    _produce(settings, workload)
    one, one_p, cpu_one = _drain(bootstrap, workdir, prefix, 1)
    two, two_p, cpu_two = _drain(bootstrap, workdir, prefix, 2)
    return ScaleBench(len(workload), one, two, one_p, two_p, cpu_one, cpu_two, os.cpu_count() or 1)


def bench_rebalance(bootstrap: str, workdir: Path) -> RebalanceBench:
    """A second worker joining, then SIGKILLed, under live traffic (see the module doc)."""
    tag = uuid.uuid4().hex[:8]
    prefix, app = f"bench-rebalance-{tag}.", f"bench-rebalance-{tag}"
    settings = load_settings(**_sections(bootstrap, workdir, prefix, app, "w0"))
    ensure_topics(bootstrap, settings.topics.all().values(), partitions=_PARTITIONS)
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
                run_id=f"run-{n % 600}",
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
    offsets = _Offsets(settings, ("tool_calls",))
    procs: list[subprocess.Popen[bytes]] = []

    def everywhere_past(marks: dict[tuple[str, int], int]) -> Callable[[], bool]:
        return lambda: all(v > marks[k] for k, v in offsets.committed().items())

    try:
        procs.append(_start(_sections(bootstrap, workdir, prefix, app, "w0")))
        cold = _wait(everywhere_past(dict.fromkeys(offsets.committed(), 0)), "a cold start", 180)
        time.sleep(2)
        joined = time.monotonic()
        procs.append(_start(_sections(bootstrap, workdir, prefix, app, "w1")))
        # processing again everywhere: every partition commits past where it stood once the
        # newcomer has been given its partitions (the rebalance's pause ends)
        _wait(lambda: _has_members(settings, 2), "the second worker's partitions", 180)
        _wait(everywhere_past(offsets.committed()), "processing after the join", 180)
        join = time.monotonic() - joined
        time.sleep(2)
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        procs[1].wait()
        _wait(lambda: _has_members(settings, 1), "the group to drop the killed worker", 300)
        _wait(everywhere_past(offsets.committed()), "processing after the kill", 300)
        leave = time.monotonic() - killed
    finally:
        stop.set()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        offsets.close()
    return RebalanceBench(cold, join, leave)


def _has_members(settings: Settings, n: int) -> bool:
    """The processors' group is stable with ``n`` members holding partitions."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    group = settings.worker.processors_group
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:
        return False
    holding = [m for m in description.members if m.assignment.topic_partitions]
    return description.state == ConsumerGroupState.STABLE and len(holding) == n


def cpu_figures(result: ScaleBench) -> list[Figure]:
    """Where the CPU went in the two runs: how much of the machine one process left idle
    for a second one, and what an event cost with one and with two."""
    one, two = result.cpu_one, result.cpu_two
    if one is None or two is None:
        print("scale: no CPU figures (/proc not readable, or no steady window)")
        return []
    return [
        Figure(
            f"processors, machine cores busy with 2 processes (of {result.cores})",
            two.machine,
            "cores",
            "with 1 process",
            one.machine,
            higher_is_better=True,
            note=(
                f"the broker and the workers share the cores: one worker process used "
                f"{one.workers:.2f} of the {one.machine:.2f} busy, leaving "
                f"{max(0.0, result.cores - one.machine):.2f} idle for a second one"
            ),
        ),
        Figure(
            "processors, machine CPU per event, 2 processes",
            two.machine_us_per_event,
            "CPU µs",
            "1 process",
            one.machine_us_per_event,
            higher_is_better=False,
            note="every process on the machine (the broker's share included) over the events",
        ),
        Figure(
            "processors, worker CPU per event, 2 processes",
            two.worker_us_per_event,
            "CPU µs",
            "1 process",
            one.worker_us_per_event,
            higher_is_better=False,
            note="the cost of an event in the worker processes (two also exchange partials)",
        ),
    ]
