"""The Emitter against the real broker: 10,000 mixed events round-trip in per-run order,
in both framings, and a spool left by an earlier process is replayed on start."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from opentelemetry.sdk.trace import TracerProvider

from agentstream import (
    AgentState,
    CallStatus,
    Emitter,
    ErrorClass,
    ToolCall,
    run_context,
)
from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack import free_ports
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.emitter import EmitterStats
from agentstream.schemas import AgentEvent, AvroCodec, InMemorySchemaRegistry
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

TRACER = TracerProvider().get_tracer("test")
RUNS = 250
EVENTS_PER_RUN = 40  # 250 x 40 = 10,000
#: upper bound on waiting for messages (a bound, not a measured threshold)
CONSUME_LIMIT_S = 120.0


class UpstreamError(Exception):
    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def _settings(bootstrap: str, spool_dir: Path, **emitter: Any) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"prefix": f"emit{uuid.uuid4().hex[:8]}."},
        emitter={"spool_dir": spool_dir, "replay_interval_s": 0.5, **emitter},
    )


def _agent_topics(settings: Settings) -> list[str]:
    return [
        settings.topics.name(s) for s in ("tool_calls", "model_calls", "transitions", "reviews")
    ]


#: (topic, key, value, headers) of a consumed message
Consumed = tuple[Any, Any, Any, Any]


def decode_event(codec: AvroCodec, value: bytes) -> AgentEvent:
    event = codec.decode_model(value)
    assert isinstance(event, AgentEvent)
    return event


def consume_all(bootstrap: str, topics: list[str], expected: int) -> list[Consumed]:
    """Every message of ``topics`` from the start: (topic, key, value, headers)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    out: list[Consumed] = []
    deadline = time.monotonic() + CONSUME_LIMIT_S
    try:
        consumer.subscribe(topics)
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                out.append(
                    (message.topic(), message.key(), message.value(), message.headers() or [])
                )
        # a little longer: anything beyond ``expected`` would be a duplicate
        for message in consumer.consume(1000, 1.0):
            if message.error() is None:
                out.append(
                    (message.topic(), message.key(), message.value(), message.headers() or [])
                )
    finally:
        consumer.close()
    return out


async def _one_run(emitter: Emitter, run: int) -> list[AgentEvent]:
    """A run as an agent would write it: transitions, tool calls, model calls, a review."""
    sent: list[AgentEvent] = []
    with run_context(
        tenant_id=f"tenant-{run % 7}",
        agent_id=f"agent-{run % 3}",
        agent_version=f"1.{run % 2}.0",
        user_id=f"user-{run % 11}",
        run_id=f"run-{run:04d}-{uuid.uuid4().hex[:6]}",
    ):
        sent.append(emitter.transition(AgentState.INIT))
        sent.append(emitter.transition("PREPARING", reason="planning"))
        sent.append(emitter.transition("EXECUTING"))
        for step in range(EVENTS_PER_RUN - 6):
            await asyncio.sleep(0)  # interleave the runs
            kind = step % 5
            if kind == 3:
                sent.append(
                    emitter.model_call("gpt-4o", "openai", 100 + step, 20, 0.001 * step, 50.0)
                )
                continue
            try:
                async with emitter.tool_call(
                    f"tool-{step % 4}", params={"step": step, "mail": "ops@example.com"},
                    attempt=1 + step % 3, idempotent=step % 2 == 0,
                ) as call:  # fmt: skip
                    if kind == 1:
                        raise UpstreamError(503 if step % 2 else 404)
                    if kind == 2:
                        call.status = CallStatus.PARTIAL
                        call.fallback_used = True
                    call.result_summary = f"step {step} ok"
            except UpstreamError:
                pass
            assert call.event is not None
            sent.append(call.event)
        if run % 10 == 0:
            sent.append(emitter.review("alice", "OVERRIDDEN", "fixed by hand"))
        else:
            sent.append(emitter.review("bob", "APPROVED"))
        failed = run % 9 == 0
        sent.append(emitter.transition("REVIEWING"))
        sent.append(
            emitter.transition(
                "FAILED" if failed else "COMPLETED",
                error_category="TOOL" if failed else None,
            )
        )
    return sent


async def _emit_runs(emitter: Emitter) -> list[AgentEvent]:
    async def traced_run(run: int) -> list[AgentEvent]:
        if run % 2:
            with TRACER.start_as_current_span(f"run-{run}"):
                return await _one_run(emitter, run)
        return await _one_run(emitter, run)

    runs = await asyncio.gather(*(traced_run(run) for run in range(RUNS)))
    return [event for run in runs for event in run]


def _spool_drained(stats: EmitterStats) -> bool:
    """Every event the emitter spooled has been replayed (or refused for good)."""
    return not stats.diverting and stats.spooled == stats.replayed + stats.rejected


def test_ten_thousand_mixed_events_round_trip_in_per_run_order(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    settings = _settings(kafka_broker.bootstrap, tmp_path / "spool")
    topics = _agent_topics(settings)
    kafka_broker.create_topics(topics, partitions=3)
    with Emitter(settings) as emitter:
        sent = asyncio.run(_emit_runs(emitter))
        assert emitter.flush(60) == 0
        stats = emitter.stats()
    assert len(sent) == RUNS * EVENTS_PER_RUN == 10_000
    assert (stats.emitted, stats.delivered, stats.spooled, stats.lost) == (10_000, 10_000, 0, 0)
    kinds = {type(e).__name__ for e in sent}
    assert kinds == {"ToolCall", "ModelCall", "StateTransition", "ReviewDecision"}
    assert {e.error_class for e in sent if isinstance(e, ToolCall)} >= {
        ErrorClass.NONE,
        ErrorClass.RETRYABLE,
        ErrorClass.NON_RETRYABLE,
    }

    messages = consume_all(kafka_broker.bootstrap, topics, len(sent))
    codec = AvroCodec()
    by_id = {e.event_id: e for e in sent}
    received: dict[tuple[str, str], list[str]] = defaultdict(list)
    for topic, key, value, headers in messages:
        event = decode_event(codec, value)
        assert event == by_id[event.event_id]  # decodes to the very model that was emitted
        assert key == event.run_id.encode()
        assert topic == emitter.topic_for(type(event))
        traceparent = dict(headers).get("traceparent")
        if event.trace_id is None:
            assert traceparent is None
        else:
            assert traceparent == f"00-{event.trace_id}-{event.span_id}-01".encode()
        received[(event.run_id, topic)].append(event.event_id)
    assert len(messages) == len(sent) == len(by_id)  # every event once, nothing else
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in sent:
        expected[(event.run_id, emitter.topic_for(type(event)))].append(event.event_id)
    assert received == expected  # per run (and topic, i.e. partition): emit order
    assert all("[REDACTED:email]" in e.params for e in sent if isinstance(e, ToolCall))

    # the same events, produced with the Confluent framing, decode to the same models
    registry = InMemorySchemaRegistry()
    confluent = _settings(kafka_broker.bootstrap, tmp_path / "spool2")
    kafka_broker.create_topics(_agent_topics(confluent), partitions=3)
    with Emitter(confluent, codec=AvroCodec("confluent", registry)) as emitter2:
        resent = [emitter2.emit(event) for event in sent]
        assert emitter2.flush(60) == 0
        # flush() counts an event delivered *or spooled*: one the broker was slow to take
        # (its delivery timed out under load) waits in the spool for the next replay, and
        # close() would leave it there for the next process. Wait for the replay, as a
        # caller wanting everything in Kafka now would (a CI run missed one event here)
        wait_until(lambda: _spool_drained(emitter2.stats()), "the spool replayed", timeout_s=120)
        stats2 = emitter2.stats()
    assert resent == sent
    assert (stats2.emitted, stats2.lost, stats2.rejected) == (len(sent), 0, 0), stats2
    framed = consume_all(kafka_broker.bootstrap, _agent_topics(confluent), len(sent))
    assert len(framed) == len(sent), (len(framed), stats2)
    reader = AvroCodec(registry=registry)
    assert all(value[0] == 0 for _, _, value, _ in framed)
    decoded = {m.event_id: m for m in (decode_event(reader, v) for _, _, v, _ in framed)}
    assert decoded == by_id


def test_a_spool_left_by_an_earlier_process_is_replayed_on_start(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"
    [dead_port] = free_ports("127.0.0.1", 1)
    settings = _settings(kafka_broker.bootstrap, spool_dir, delivery_timeout_ms=1000)
    away = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"bootstrap_servers": f"127.0.0.1:{dead_port}"}
            )
        }
    )
    first = Emitter(away)  # the broker is "away" for this process
    with run_context(tenant_id="t", agent_id="a", run_id="earlier"):
        sent = [
            first.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i) for i in range(300)
        ]
    assert first.flush(60) == 0
    first.close(0)
    assert first.stats().spooled == 300
    kafka_broker.create_topics(_agent_topics(settings), partitions=3)

    second = Emitter(settings)  # the next start, with the broker back
    try:
        deadline = time.monotonic() + CONSUME_LIMIT_S
        while second.stats().replayed < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.stats().replayed == 300
    finally:
        second.close()
    messages = consume_all(kafka_broker.bootstrap, [settings.topics.name("tool_calls")], 300)
    codec = AvroCodec()
    ids = [decode_event(codec, value).event_id for _, _, value, _ in messages]
    assert ids == [e.event_id for e in sent]  # one run, one partition: in order, once each
    assert not any(spool_dir.iterdir())  # every segment was deleted after its replay
