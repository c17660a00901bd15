"""Faults against the real broker, each compared with a truth computed by the test
(:mod:`tests.support.faults`), never with another run of the engine: a backlog read with
skewed fetches over 6 partitions, a worker killed again and again, a zombie fenced by its
successor, duplicates, an absurd timestamp, a late producer, a failed batch, a restore
that cannot finish, and the state of the previous release."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from agentstream.core.config import Settings, settings_env
from agentstream.core.errors import AgentstreamError
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.processors.engine._state import read_changelog
from agentstream.schemas import StateTransition, ToolCall
from agentstream.worker import ensure_changelog
from tests.support.engine import committed_lag, engine_settings, produce, run_engine
from tests.support.faults import CTX, S, Truth, check, population, records, stored

pytestmark = pytest.mark.integration

#: windows close by the wall clock once the input is read and quiet for 1 s
_QUICK: dict[str, Any] = {"rollups": {"idle_after_s": 1, "allowed_lateness_s": 5}}


def _finished(engine: ProcessorEngine, total: int) -> bool:
    health = engine.health()
    return engine.stats.consumed >= total and health["caught_up"] and health["open_runs"] == 0


def _poll(engine: ProcessorEngine, times: int) -> None:
    for _ in range(times):
        engine.poll(0.3)


def test_a_backlog_over_six_partitions_with_skewed_fetches(kafka_broker: BrokerHandle) -> None:
    # emitted before the worker starts; tiny fetches and batches make the consumer read the
    # partitions unevenly: every event must still count in its own window
    settings = engine_settings(
        kafka_broker,
        partitions=6,
        **_QUICK,
        kafka={"overrides": {"processors": {"max.partition.fetch.bytes": 3000}}},
    )
    start = datetime.now(UTC) - timedelta(minutes=4)
    events, truth = population(seed=21, runs=1500, start=start, spacing_ms=80)
    # skew: the tool calls are all produced first, then the transitions
    ordered = [e for e in events if isinstance(e, ToolCall)] + [
        e for e in events if not isinstance(e, ToolCall)
    ]
    produce(settings, records(ordered))
    run_engine(settings, lambda e: _finished(e, len(events)), settle_s=3, batch_size=97)
    check(settings, truth)


def _worker_env(settings: Settings, tmp_path: Any) -> dict[str, str]:
    return {
        **os.environ,
        **settings_env(
            {
                "kafka": {
                    "bootstrap_servers": settings.kafka.bootstrap_servers,
                    "partitions": settings.kafka.partitions,
                },
                "topics": {"prefix": settings.topics.prefix},
                "worker": {"app_id": settings.worker.app_id, "web_port": 0},
                "lifecycle": {"reviewing_budget_s": 2, "timeout_grace_s": 0.5, "idle_after_s": 1},
                "rollups": {"idle_after_s": 1, "allowed_lateness_s": 5},
                "clickhouse": {"path": tmp_path / "chdb"},
            }
        ),
    }


def test_sigkill_again_and_again_gives_the_truth(kafka_broker: BrokerHandle, tmp_path: Any) -> None:
    """The issue's restart on a backlog: killed mid-stream three times, restarted each time
    at once (static membership); the result is the truth, with no false timeouts."""
    settings = engine_settings(kafka_broker, partitions=3, **_QUICK)
    start = datetime.now(UTC) - timedelta(minutes=4)
    events, truth = population(seed=7, runs=2500, start=start, spacing_ms=60)
    produce(settings, records(events))
    total = len(events)
    env = _worker_env(settings, tmp_path)
    for kill, left in enumerate((0.8, 0.55, 0.3)):
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while committed_lag(settings) > total * left and time.monotonic() < deadline:
            assert proc.poll() is None, f"the worker exited ({proc.returncode}) before kill {kill}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert committed_lag(settings) > 0, "the last kill must land mid-stream"
    run_engine(settings, lambda e: _finished(e, 1) and committed_lag(settings) == 0, settle_s=3)
    check(settings, truth)


def test_live_traffic_with_a_sigkill_and_a_restart(
    kafka_broker: BrokerHandle, tmp_path: Any
) -> None:
    """The issue's live case: events sent as they happen, the worker killed mid-stream and
    restarted 2 s later; in-flight runs whose deadlines fall in the gap must not time out."""
    settings = engine_settings(kafka_broker, partitions=3, **_QUICK)
    start = datetime.now(UTC) + timedelta(seconds=2)
    events, truth = population(seed=11, runs=300, start=start, spacing_ms=50)
    stop = threading.Event()

    def live() -> None:
        producer = Producer(
            {"bootstrap.servers": settings.kafka.bootstrap_servers, "partitioner": "murmur2_random"}
        )
        for (stream, key, value), event in zip(records(events), events, strict=True):
            wait = (event.event_time - datetime.now(UTC)).total_seconds()
            if wait > 0 and stop.wait(wait):
                break
            producer.produce(settings.topics.name(stream), value, key.encode())
            producer.poll(0)
        producer.flush(30)

    feeder = threading.Thread(target=live, daemon=True)
    feeder.start()
    env = _worker_env(settings, tmp_path)
    command = [sys.executable, "-m", "agentstream", "worker", "--no-sink", "--no-alerts"]
    quiet: dict[str, Any] = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(command, env=env, **quiet)
    try:
        deadline = time.monotonic() + 120
        while _committed(settings) < len(events) // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(2)  # the gap the issue saw (a restart 5 s later; deadlines are 2 s here)
        proc = subprocess.Popen(command, env=env, **quiet)
        feeder.join(120)
        while committed_lag(settings) > 0 and time.monotonic() < deadline + 60:
            time.sleep(0.1)
    finally:
        stop.set()
        proc.kill()
        proc.wait()
    run_engine(settings, lambda e: _finished(e, 0) and committed_lag(settings) == 0, settle_s=3)
    # windows close by the wall clock minus the lateness: the current minute is still open
    check(settings, truth, ended_by=datetime.now(UTC) - timedelta(seconds=6))


def _committed(settings: Settings) -> int:
    try:
        return _total(settings) - committed_lag(settings)
    except KafkaException:  # a topic just created may have no leader yet
        return 0


def _total(settings: Settings) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "x"})
    try:
        total = 0
        for stream in ("transitions", "tool_calls"):
            topic = settings.topics.name(stream)
            for p in range(settings.kafka.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def test_a_zombie_is_fenced_by_its_successor(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=2, **_QUICK)
    start = datetime.now(UTC) - timedelta(minutes=3)
    events, truth = population(seed=3, runs=600, start=start, spacing_ms=100)
    produce(settings, records(events))
    zombie = ProcessorEngine(settings, batch_size=300)
    zombie.open(lambda topic, n: ensure_changelog(settings, topic, n))
    deadline = time.monotonic() + 60
    while zombie.stats.batches < 3 and time.monotonic() < deadline:
        zombie.poll(0.3)
    # abandoned, not closed: a successor with the same identity fences it
    run_engine(settings, lambda e: _finished(e, 1) and committed_lag(settings) == 0, settle_s=3)
    try:
        with pytest.raises(AgentstreamError):
            _poll(zombie, 20)
    finally:
        zombie.close()
    check(settings, truth)


def test_duplicates_a_bad_clock_and_a_late_producer(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=1, **_QUICK)
    now = datetime.now(UTC)
    events, truth = population(seed=5, runs=400, start=now - timedelta(minutes=2), spacing_ms=100)
    calls = [e for e in events if isinstance(e, ToolCall)]
    recs = records(events)
    # one tool call delivered three times: counted once
    recs += records([calls[10], calls[10]])
    # an event dated 9999 and one from 1999: dead-lettered, no clock moves
    absurd = [
        calls[20].model_copy(update={"event_id": f"00000000-0000-4000-8000-00000000000{i}"})
        for i in (1, 2)
    ]
    absurd[0] = absurd[0].model_copy(update={"event_time": datetime(9999, 1, 1, tzinfo=UTC)})
    absurd[1] = absurd[1].model_copy(update={"event_time": datetime(1999, 1, 1, tzinfo=UTC)})
    recs.insert(len(recs) // 2, records(absurd)[0])
    recs.insert(len(recs) // 2, records(absurd)[1])
    # a producer that spooled through an outage: its runs arrive 8 min behind the stream,
    # seconds apart; they complete (or time out on their own budget), they count in rollups
    late, late_truth = population(
        seed=6, runs=30, start=now - timedelta(minutes=10), spacing_ms=2000
    )
    recs += records(late)
    # and one tool call 20 min behind: past the 10 min horizon, too late for its window
    too_late = calls[0].model_copy(
        update={
            "event_id": "00000000-0000-4000-8000-0000000000ff",
            "event_time": now - timedelta(minutes=20),
        }
    )
    recs += records([too_late])
    produce(settings, recs)
    merged = Truth(
        final={**truth.final, **late_truth.final}, windows=truth.windows + late_truth.windows
    )
    run_engine(settings, lambda e: _finished(e, len(recs)), settle_s=3)
    dead = check(settings, merged, extra_dead=3)
    reasons = sorted((d.error_type, d.reason.split(" ")[0]) for d in dead)
    assert [r[0] for r in reasons] == ["EventTimeOutOfRange", "EventTimeOutOfRange", "TooLate"]
    assert any("ahead of the clock" in d.reason for d in dead)
    assert any("too late for its window" in d.reason for d in dead)


def test_an_exception_inside_a_batch_aborts_it(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=1, **_QUICK)
    events, truth = population(
        seed=8, runs=100, start=datetime.now(UTC) - timedelta(minutes=2), spacing_ms=50
    )
    produce(settings, records(events))
    engine = ProcessorEngine(settings)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    calls = 0
    real = engine._route

    def failing(*args: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 200:
            raise RuntimeError("a bug")
        real(*args)

    engine._route = failing  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError, match="a bug"):
        _poll(engine, 100)
    with pytest.raises(AgentstreamError, match="start a new engine"):
        engine.poll(0.3)
    engine.close()
    run_engine(settings, lambda e: _finished(e, 1) and committed_lag(settings) == 0, settle_s=3)
    check(settings, truth)


def test_a_restore_that_cannot_finish_stops_the_worker(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker, partitions=1, **_QUICK)
    topic = f"{settings.topics.prefix}{settings.worker.app_id}-state"
    ensure_changelog(settings, topic)
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i in range(20_000):
        producer.produce(topic, b"{}", f"run:r{i}".encode())
    producer.flush(30)
    worker = settings.worker.model_copy(update={"restore_timeout_s": 0.05})
    slow = settings.model_copy(update={"worker": worker})
    engine = ProcessorEngine(slow)
    engine.open()
    with pytest.raises(
        AgentstreamError, match=f"cannot restore processor state from {topic}"
    ) as info:
        _poll(engine, 100)  # the restore runs on the assignment
    assert "read to offset" in str(info.value)
    engine.close()


def test_state_of_the_previous_release_is_migrated(kafka_broker: BrokerHandle) -> None:
    """Today's release wrote ``run:<id>`` without the partition, a singleton ``tracker``
    and version-1 rollup cells: a run it left in REVIEWING completes after the upgrade."""
    settings = engine_settings(kafka_broker, partitions=1, **_QUICK)
    topic = f"{settings.topics.prefix}{settings.worker.app_id}-state"
    ensure_changelog(settings, topic)
    now = datetime.now(UTC)
    t = int((now - timedelta(seconds=30)).timestamp() * 1_000_000)
    old_run = {
        "run_id": "old",
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
    legacy = {
        b"run:old": old_run,
        b"tracker": {
            "clock": {"event_max": t, "last_wall": t},
            "partitions": {f"{settings.topics.name('transitions')}|0": t},
        },
        b"cell:meta": {"version": 1, "max_event": t, "watermark": t - 5_000_000},
    }
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for key, value in legacy.items():
        producer.produce(topic, json.dumps(value).encode(), key)
    producer.flush(30)
    done = StateTransition(
        **CTX,
        run_id="old",
        event_time=now - timedelta(seconds=20),
        from_state=S.REVIEWING,
        to_state=S.COMPLETED,
    )
    events, truth = population(seed=4, runs=50, start=now - timedelta(seconds=60), spacing_ms=100)
    produce(settings, records([done, *events]))
    truth.count(done.event_time, "runs_completed")
    run_engine(settings, lambda e: _finished(e, len(events) + 1), settle_s=3)
    states, _, dead = stored(settings)
    assert states["old"] == [S.COMPLETED]
    assert not dead
    state = read_changelog(settings, topic)
    assert "tracker" not in state
    assert "clock:partitions" not in state
    assert "clock:0" in state
    assert state["run:old"]["state"] == "COMPLETED"
    assert state["run:old"]["p"] == 0
