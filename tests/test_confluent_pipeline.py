"""Confluent framing end to end: Emitter → processors → sink, with a schema registry.

With ``emitter.registry_url`` set, the Emitter writes the Confluent framing (magic 0 +
schema id); the processors, the sink and the alert readers build their codecs from the
same settings (:func:`agentstream.core.codec.codec_from_settings`), so every event is
processed and stored, and nothing is dead-lettered. The registry is an in-test server
speaking the Confluent REST subset the client uses (:mod:`tests.support.registry`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from agentstream import Emitter, run_context
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.schemas import ModelCall, StateTransition, ToolCall
from agentstream.sinks.alerting import alerts_from_topic
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkStats, SinkWorker
from tests.support.engine import engine_settings, run_engine
from tests.support.registry import FakeRegistry, serve_registry

pytestmark = pytest.mark.integration

RUNS = 15
TIMEOUT_S = 120.0


@pytest.fixture
def registry() -> Iterator[tuple[str, type[FakeRegistry]]]:
    with serve_registry() as served:
        yield served


def raw_values(settings: Settings, stream: str) -> list[bytes]:
    """Every value on a topic, as bytes (no decoding)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    topic = settings.topics.name(stream)
    partitions = settings.kafka.partitions
    consumer.subscribe([topic])
    values: list[bytes] = []
    ended: set[int] = set()
    try:
        while len(ended) < partitions:
            for message in consumer.consume(500, 1.0):
                error = message.error()
                if error is not None:
                    ended.add(message.partition() or 0)
                elif (value := message.value()) is not None:
                    values.append(value)
    finally:
        consumer.close()
    return values


def ids(backend: ClickHouseBackend, table: str) -> set[str]:
    return {r[0] for r in backend.query(f"SELECT toString(event_id) FROM {table} FINAL").rows}


def test_confluent_framing_from_emitter_to_clickhouse(
    kafka_broker: BrokerHandle,
    clickhouse: ClickHouseBackend,
    registry: tuple[str, type[FakeRegistry]],
    tmp_path: Path,
) -> None:
    url, handler = registry
    settings = engine_settings(
        kafka_broker,
        emitter={"registry_url": url, "spool_dir": tmp_path / "spool"},
        sink={"consumer_group": f"sink-{uuid.uuid4().hex[:8]}", "flush_interval_s": 0.2},
    )
    emitter = Emitter(settings, replay_on_start=False)
    assert emitter.codec.framing == "confluent"
    transitions: list[StateTransition] = []
    model_calls: list[ModelCall] = []
    for _ in range(RUNS):
        with run_context(tenant_id="acme", agent_id="planner", agent_version="1.0"):
            transitions.append(emitter.transition("INIT"))
            transitions.append(emitter.transition("PREPARING"))
            transitions.append(emitter.transition("EXECUTING"))
            with emitter.tool_call("search"):
                pass
            model_calls.append(
                emitter.model_call(
                    "m", "p", input_tokens=10, output_tokens=5, cost_usd=0.01, latency_ms=1.0
                )
            )
            transitions.append(emitter.transition("REVIEWING"))
            transitions.append(emitter.transition("COMPLETED"))
    assert emitter.flush(30) == 0
    emitter.close()

    # the topics hold the Confluent framing: magic byte 0, then a registered schema id
    sent_tool_calls = raw_values(settings, "tool_calls")
    assert len(sent_tool_calls) == RUNS
    assert all(v[:1] == b"\x00" for v in sent_tool_calls)
    registered = {int.from_bytes(v[1:5], "big") for v in sent_tool_calls}
    assert registered <= set(handler.schemas)
    codec = codec_from_settings(settings, role="consumer")
    tool_calls = [codec.decode_model(v, ToolCall) for v in sent_tool_calls]
    total = len(transitions) + len(tool_calls) + len(model_calls)

    def processed(engine: ProcessorEngine) -> bool:
        return engine.stats.consumed >= total

    engine = run_engine(settings, processed, timeout_s=TIMEOUT_S)
    assert engine.stats.consumed == total

    expected = {
        "tool_calls": {c.event_id for c in tool_calls},
        "model_calls": {c.event_id for c in model_calls},
        "state_transitions": {t.event_id for t in transitions},
    }
    sink = SinkWorker(settings, backend=clickhouse)

    def stored(_stats: SinkStats) -> bool:
        return all(keys <= ids(clickhouse, table) for table, keys in expected.items())

    try:
        sink.run_until(stored, TIMEOUT_S)
    finally:
        sink.close()
    dead_letters = raw_values(settings, "invalid")
    print(
        f"\nCONFLUENT: runs={RUNS} emitted={total} (transitions={len(transitions)} "
        f"tool calls={len(tool_calls)} model calls={len(model_calls)}) "
        f"schemas registered={len(handler.schemas)} processed={engine.stats.consumed} "
        + " ".join(f"{t}={len(ids(clickhouse, t))}" for t in expected)
        + f" dead letters={len(dead_letters)} sink skipped={sink.stats.skipped}"
    )
    for table, keys in expected.items():
        assert ids(clickhouse, table) == keys, table
    assert dead_letters == []
    assert clickhouse.query("SELECT count() FROM invalid_events").scalar() == 0
    assert sink.stats.skipped == 0
    assert sink.stats.dead_lettered == 0
    # the alert readers decode with the same codec (no alert fired here: nothing to read)
    assert alerts_from_topic(settings) == []
