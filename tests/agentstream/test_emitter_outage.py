"""The broker goes away and comes back: 1,000 events spooled, replayed, each arriving once.

A broker of its own (free ports, the shared jar cache) is stopped and restarted on
the same data folder and ports, while one Emitter keeps running.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer

from agentstream import Emitter, run_context
from agentstream.core.config import LocalKafkaSettings, load_settings
from agentstream.devtools.localstack.testing import temporary_broker
from agentstream.emitter._spool import Spool
from agentstream.schemas import AgentEvent, AvroCodec
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: upper bound on every wait below (a bound, not a measured threshold)
WAIT_S = 180.0


_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.1)


def _consume(bootstrap: str, topics: list[str], expected: int) -> list[tuple[Any, Any]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"outage-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[Any, Any]] = []
    deadline = time.monotonic() + WAIT_S
    try:
        consumer.subscribe(topics)
        while len(out) < expected and time.monotonic() < deadline:
            out += [(m.topic(), m.value()) for m in consumer.consume(1000, 0.5) if not m.error()]
        out += [(m.topic(), m.value()) for m in consumer.consume(1000, 2.0) if not m.error()]
    finally:
        consumer.close()
    return out


def test_events_emitted_while_the_broker_is_down_arrive_exactly_once(
    tmp_path: Path, local_kafka_settings: LocalKafkaSettings
) -> None:
    with temporary_broker(tmp_path / "kafka", local_kafka_settings) as broker:
        assert broker.local is not None
        settings = load_settings(
            kafka={"bootstrap_servers": broker.bootstrap},
            topics={"prefix": "outage."},
            emitter={
                "spool_dir": tmp_path / "spool",
                "delivery_timeout_ms": 3000,
                "replay_interval_s": 0.5,
            },
        )
        topics = [settings.topics.name(s) for s in ("tool_calls", "transitions")]
        broker.create_topics(topics, partitions=3)
        emitter = Emitter(settings)
        try:
            sent: list[AgentEvent] = []
            with run_context(tenant_id="t", agent_id="a", run_id="warm-up"):
                sent.append(emitter.transition("INIT"))
            assert emitter.flush(60) == 0
            assert emitter.stats().delivered == 1

            broker.local.stop()
            for run in range(20):
                with run_context(tenant_id="t", agent_id="a", run_id=f"run-{run}"):
                    sent.append(emitter.transition("INIT"))
                    for step in range(48):
                        with emitter.tool_call(f"tool-{step % 3}", params={"step": step}) as call:
                            call.result_summary = f"step {step}"
                        assert call.event is not None
                        sent.append(call.event)
                    sent.append(emitter.transition("PREPARING"))
            assert len(sent) == 1 + 1000

            _wait_until(lambda: emitter.stats().spooled == 1000, "1,000 events in the spool")
            assert Spool(settings.emitter.spool_dir).stats().records == 1000
            stats = emitter.stats()
            assert (stats.delivered, stats.failed, stats.lost, stats.diverting) == (
                1,
                1000,
                0,
                True,
            )

            broker.local.start()  # same data folder, same ports
            _wait_until(lambda: emitter.stats().replayed == 1000, "the replay")
            _wait_until(
                lambda: Spool(settings.emitter.spool_dir).stats().records == 0,
                "the spool to empty",
            )
            _wait_until(lambda: not emitter.stats().diverting, "direct sending again")
            with run_context(tenant_id="t", agent_id="a", run_id="after"):
                sent.append(emitter.transition("INIT"))
            assert emitter.flush(60) == 0
        finally:
            emitter.close()

        messages = _consume(broker.bootstrap, topics, len(sent))
    codec = AvroCodec()
    decoded = [codec.decode_model(value) for _, value in messages]
    assert all(isinstance(event, AgentEvent) for event in decoded)
    decoded_events = cast(list[AgentEvent], decoded)
    counts = Counter(event.event_id for event in decoded_events)
    assert set(counts) == {event.event_id for event in sent}  # nothing missing
    assert len(counts) == 1002
    assert max(counts.values()) == 1
    by_id = {event.event_id: event for event in sent}
    assert all(event == by_id[event.event_id] for event in decoded_events)
    # replayed in spool order: each run's events are still in emit order per topic
    received: dict[tuple[str, str], list[str]] = defaultdict(list)
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    for event in decoded_events:
        received[(event.run_id, type(event).__name__)].append(event.event_id)
    for event in sent:
        expected[(event.run_id, type(event).__name__)].append(event.event_id)
    assert received == expected
