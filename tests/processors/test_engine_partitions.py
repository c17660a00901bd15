"""Partition-parallel processors against the real broker: two workers in one group, one
SIGKILLed mid-stream and another joining, give the lifecycle and rollup truth computed by
:mod:`tests.support.faults` (never another run of the engine); the layout check at start;
the single-partition changelog of the release before migrated on first start."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewPartitions

from agentstream.core.config import Settings, settings_env
from agentstream.core.errors import AgentstreamError, PartitionCountMismatch
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.devtools.soak import partition_of as truth_partition_of
from agentstream.processors.engine import ProcessorEngine
from agentstream.processors.engine._assignment import partition_of
from agentstream.processors.engine._state import read_changelog
from agentstream.schemas import StateTransition, decode_model
from agentstream.worker import ensure_changelog
from tests.support.engine import committed_lag, engine_settings, produce, run_engine
from tests.support.faults import (
    CTX,
    S,
    Truth,
    check,
    finished,
    population,
    records,
    stored,
)
from tests.support.wait import wait_until

_QUICK: dict[str, Any] = {"rollups": {"idle_after_s": 1, "allowed_lateness_s": 5}}


def _state_topic(settings: Settings) -> str:
    return f"{settings.topics.prefix}{settings.worker.app_id}-state"


def test_partition_of_is_the_emitters_murmur2() -> None:
    # the soak's truth has its own murmur2 (it imports nothing of the processors)
    rng = random.Random(3)
    keys = ["", "a", "ab", "abc", "abcd", *(f"run-{rng.getrandbits(64):x}" for _ in range(500))]
    for n in (1, 2, 4, 6, 7):
        assert [partition_of(k, n) for k in keys] == [truth_partition_of(k, n) for k in keys]


@pytest.mark.integration
def test_input_and_changelog_partition_counts_must_match(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=2)
    ensure_changelog(settings, _state_topic(settings), 3)
    engine = ProcessorEngine(settings)
    try:
        with pytest.raises(PartitionCountMismatch) as info:
            engine.open()
        assert f"{_state_topic(settings)}: 3" in str(info.value)
        assert f"{settings.topics.name('transitions')}: 2" in str(info.value)
        tool_calls = settings.topics.name("tool_calls")
        admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
        admin.create_partitions([NewPartitions(tool_calls, 4)])[tool_calls].result(120)
        engine.close()
        engine = ProcessorEngine(settings)
        with pytest.raises(PartitionCountMismatch, match=f"{tool_calls}: 4"):
            engine.open()
    finally:
        engine.close()


def _worker_env(settings: Settings, tmp_path: Any, instance: str) -> dict[str, str]:
    return {
        **os.environ,
        **settings_env(
            {
                "kafka": {
                    "bootstrap_servers": settings.kafka.bootstrap_servers,
                    "partitions": settings.kafka.partitions,
                    # a SIGKILLed static member's partitions move after its session, its open
                    # transaction is aborted after the transaction timeout: short, for a test
                    "overrides": {
                        "processors": {"session.timeout.ms": 6000, "transaction.timeout.ms": 10000}
                    },
                },
                "topics": {"prefix": settings.topics.prefix},
                "worker": {
                    "app_id": settings.worker.app_id,
                    "web_port": 0,
                    "instance_id": instance,
                },
                "lifecycle": {"reviewing_budget_s": 2, "timeout_grace_s": 0.5, "idle_after_s": 1},
                "rollups": {"idle_after_s": 1, "allowed_lateness_s": 5},
                "clickhouse": {"path": tmp_path / f"chdb-{instance}"},
                "telemetry": {"log_level": "debug"},  # each timeout, for a failure's story
            }
        ),
    }


def _members_with_partitions(settings: Settings) -> int:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    group = settings.worker.processors_group
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:  # the coordinator is still loading: ask again
        return 0
    return sum(1 for m in description.members if m.assignment.topic_partitions)


def _orphans(n: int, at: datetime) -> list[StateTransition]:
    """Transitions of runs that never started: each one dead-lettered, wherever it lands."""
    return [
        StateTransition(
            **CTX,
            run_id=f"orphan-{i}",
            event_time=at + timedelta(milliseconds=i),
            from_state=S.EXECUTING,
            to_state=S.REVIEWING,
        )
        for i in range(n)
    ]


@pytest.mark.integration
def test_two_workers_a_sigkill_and_a_third_joining(
    kafka_broker: BrokerHandle, tmp_path: Any
) -> None:
    settings = engine_settings(kafka_broker, partitions=4, **_QUICK)
    start = datetime.now(UTC) - timedelta(minutes=4)
    events, truth = population(seed=21, runs=2000, start=start, spacing_ms=100)
    orphans = _orphans(12, start + timedelta(seconds=30))
    # half now, half right before the kill: the kill lands mid-stream however fast the
    # workers are (a batch of 2,000 records can take the lag from 80 % to 0 between looks).
    # Cut between runs: a partition read to its end and quiet for idle_after_s lets the
    # wall clock stand in, which would fail a run cut in two (its next events minutes
    # behind the wall clock, as a late producer's are)
    ordered = [*events, *orphans]
    everything = records(ordered)
    half = next(
        i
        for i in range(len(ordered) // 2, len(ordered))
        if getattr(ordered[i], "to_state", None) is S.INIT or ordered[i].run_id.startswith("o")
    )
    produce(settings, everything[:half])
    command = [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"]

    logs: list[Any] = []

    def worker(name: str) -> subprocess.Popen[bytes]:
        logs.append((tmp_path / f"{name}.log").open("wb"))  # for a failure's post-mortem
        env = _worker_env(settings, tmp_path, name)
        return subprocess.Popen(command, env=env, stdout=logs[-1], stderr=subprocess.STDOUT)

    procs = {name: worker(name) for name in ("a", "b")}
    try:
        wait_until(
            lambda: _members_with_partitions(settings) == 2,
            "two workers sharing the partitions",
            timeout_s=90,
            poll_s=0.2,
        )
        wait_until(
            lambda: committed_lag(settings) <= half * 0.6,
            "the workers to process 40 % of the first half",
            timeout_s=120,
            poll_s=0.05,
        )
        produce(settings, everything[half:])
        os.kill(procs["a"].pid, signal.SIGKILL)
        procs["a"].wait()
        assert committed_lag(settings) > 0, "the kill must land mid-stream"
        procs["c"] = worker("c")
        wait_until(
            lambda: committed_lag(settings) == 0 and finished(settings, truth),
            "every run's verdict",
            timeout_s=240,
            poll_s=1,
        )
        assert all(p.poll() is None for n, p in procs.items() if n != "a"), "a worker died"
        # the rollups, merged over the workers' partitions (two-stage rollups)
        try:
            wait_until(
                lambda: _rollups_match(settings, truth, len(orphans)),
                "the rollups of the truth",
                timeout_s=120,
                poll_s=2,
            )
        except AssertionError:
            _explain(settings, truth, len(orphans), tmp_path)
            raise
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        for log in logs:
            log.close()
    dead = check(settings, truth, extra_dead=len(orphans))
    assert {d.run_id for d in dead} == {o.run_id for o in orphans}


def _explain(settings: Settings, truth: Truth, dead: int, logs: Any) -> None:
    """Raise the difference with its story: what each worker logged of the runs that
    differ, and their dead letters (so a failure seen once in CI can be understood)."""
    try:
        check(settings, truth, extra_dead=dead)
    except AssertionError as exc:
        states, _, letters = stored(settings)
        runs = [r for r, want in truth.final.items() if states.get(r, [])[-1:] != [want]][:3]
        story = [f"{r}: {states.get(r)} want {truth.final[r]}" for r in runs]
        story += [f"dead letter {d.run_id}: {d.reason}" for d in letters if d.run_id in runs]
        story += _input_order(settings, set(runs))
        for log in sorted(logs.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()
            story += [f"{log.stem}: {ln}" for ln in lines if any(f" {r} " in ln for r in runs)]
            story += [f"{log.stem}: {line}" for line in lines if "partitions" in line]
        raise AssertionError(f"{exc}\n" + "\n".join(story)) from exc


def _input_order(settings: Settings, runs: set[str]) -> list[str]:
    """The input records of ``runs`` as the broker holds them: partition, offset, event."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": "explain",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    out: list[str] = []
    try:
        topics = [settings.topics.name(s) for s in ("transitions", "tool_calls")]
        parts = [TopicPartition(t, p, 0) for t in topics for p in range(settings.kafka.partitions)]
        consumer.assign(parts)
        left = len(parts)
        while left:
            message = consumer.poll(10)
            if message is None:
                break
            if message.error():
                left -= 1  # the end of a partition
                continue
            if (message.key() or b"").decode() in runs:
                event = decode_model(message.value() or b"")
                state = getattr(event, "to_state", type(event).__name__)
                out.append(
                    f"input {message.topic()}[{message.partition()}]@{message.offset()}: "
                    f"{event.run_id} {state} {event.event_time:%H:%M:%S.%f}"  # type: ignore[attr-defined]
                )
    finally:
        consumer.close()
    return out


def _rollups_match(settings: Settings, truth: Truth, dead: int) -> bool:
    try:
        check(settings, truth, extra_dead=dead)
    except AssertionError:
        return False
    return True


@pytest.mark.integration
def test_a_single_partition_changelog_is_migrated(kafka_broker: BrokerHandle) -> None:
    """The release before kept every run in one changelog partition: on first start the runs
    move to their input partition (an older run without ``p`` too) and a run left in
    REVIEWING there completes; rollups and lifecycle stay exact (single worker)."""
    settings = engine_settings(kafka_broker, partitions=4, **_QUICK)
    topic = _state_topic(settings)
    ensure_changelog(settings, topic, 1)
    now = datetime.now(UTC)
    t = int((now - timedelta(seconds=90)).timestamp() * 1_000_000)
    old: dict[bytes, Any] = {}
    ids = [f"old-{i}" for i in range(8)]
    for i, run_id in enumerate(ids):
        run = {
            "run_id": run_id,
            "state": "REVIEWING",
            "entered_at": t,
            "active_at": t,
            "tool": None,
            "deadline": t + 300_000_000,
            "recent_ids": ["x"],
            **CTX,
            "trace_id": None,
            "retention": "STANDARD",
        }
        if i % 2:
            run["p"] = truth_partition_of(run_id, 4)  # the last release recorded it
        old[f"run:{run_id}".encode()] = run
    transitions = settings.topics.name("transitions")
    old[b"clock:partitions"] = {
        "newest": {f"{transitions}|{p}": t for p in range(4)},
        "index": {str(p): t for p in range(4)},
        "low": t - 1_000_000,
    }
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for key, value in old.items():
        producer.produce(topic, json.dumps(value).encode(), key)
    producer.flush(30)
    done = [
        StateTransition(
            **CTX,
            run_id=run_id,
            event_time=now - timedelta(seconds=80),
            from_state=S.REVIEWING,
            to_state=S.COMPLETED,
        )
        for run_id in ids
    ]
    events, truth = population(seed=4, runs=80, start=now - timedelta(seconds=120), spacing_ms=100)
    produce(settings, records([*done, *events]))
    for d in done:
        truth.count(d.event_time, "runs_completed")

    def through(engine: ProcessorEngine) -> bool:
        health = engine.health()
        return engine.stats.consumed >= len(events) + len(done) and health["caught_up"]

    run_engine(settings, lambda e: through(e) and e.health()["open_runs"] == 0, settle_s=3)
    merged = Truth(final=truth.final, windows=truth.windows)
    check(settings, merged)
    for run_id in ids:
        p = truth_partition_of(run_id, 4)
        state = read_changelog(settings, topic, partitions=[p])
        assert state[f"run:{run_id}"]["state"] == "COMPLETED"
        if p != 0:
            assert f"run:{run_id}" not in read_changelog(settings, topic, partitions=[0])
    home = read_changelog(settings, topic, partitions=[0])
    assert "clock:partitions" not in home
    assert "clock:low" in home
    assert all(f"clock:{p}" in read_changelog(settings, topic, partitions=[p]) for p in range(4))


@pytest.mark.integration
def test_a_restore_reads_every_key_of_the_partitions_it_was_given(
    kafka_broker: BrokerHandle,
) -> None:
    """Several changelog partitions read at once: every live key of the partitions asked
    for, none of the others; a key the migration moved (its value on partition 0, then a
    tombstone there, its value on its own partition) is alive whatever the interleaving."""
    settings = engine_settings(kafka_broker, partitions=4)
    topic = _state_topic(settings)
    ensure_changelog(settings, topic, 4)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    written: dict[int, set[str]] = {p: set() for p in range(4)}
    for i in range(2_000):
        p = i % 4
        producer.produce(topic, json.dumps({"i": i}).encode(), f"run:r{i}".encode(), partition=p)
        written[p].add(f"run:r{i}")
    for i in range(0, 2_000, 8):  # deleted again
        producer.produce(topic, None, f"run:r{i}".encode(), partition=0)
        written[0].discard(f"run:r{i}")
    producer.produce(topic, b'{"old": 1}', b"run:moved", partition=0)
    producer.produce(topic, b'{"new": 1}', b"run:moved", partition=2)
    producer.produce(topic, None, b"run:moved", partition=0)
    producer.flush(30)
    state = read_changelog(settings, topic, partitions=[0, 2, 3])
    assert set(state) == written[0] | written[2] | written[3] | {"run:moved"}
    assert state["run:moved"] == {"new": 1}


@pytest.mark.integration
def test_a_restore_never_ends_before_a_transaction_on_its_partitions(
    kafka_broker: BrokerHandle,
) -> None:
    """The previous owner's last transaction (committed a moment ago, or still open) is
    part of the state: the restore reads to the log's end, not to the last stable offset
    (which leaves such a transaction out), or stops with an error."""
    settings = engine_settings(kafka_broker, partitions=2)
    topic = _state_topic(settings)
    ensure_changelog(settings, topic, 2)
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "transactional.id": f"{topic}-previous-owner",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b'{"state": "REVIEWING"}', b"run:a", partition=1)
    producer.flush(30)
    with pytest.raises(AgentstreamError, match="partition 1 read to offset 0 of 1"):
        read_changelog(settings, topic, timeout_s=2, partitions=[1])
    producer.commit_transaction(30)
    assert read_changelog(settings, topic, partitions=[1]) == {"run:a": {"state": "REVIEWING"}}
