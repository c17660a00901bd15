"""`agentstream spool status | replay`."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer

from agentstream.cli import main
from agentstream.devtools.localstack import free_ports
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory
from agentstream.emitter._spool import Spool, SpoolRecord
from agentstream.schemas import ToolCall, encode_model


def _event_records(topic: str, n: int) -> list[SpoolRecord]:
    records = []
    for i in range(n):
        event = ToolCall(
            tenant_id="t", user_id="u", agent_id="a", agent_version="1", run_id="run-cli",
            tool=f"tool-{i}", status="SUCCESS", latency_ms=float(i),
        )  # fmt: skip
        records.append(SpoolRecord(topic, b"run-cli", encode_model(event)))
    return records


def test_status_of_an_empty_spool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spool", "status", "--spool-dir", str(tmp_path / "none")]) == 0
    assert "0 segment(s), 0 event(s) to replay, 0 rejected" in capsys.readouterr().out


def test_status_counts_segments_events_and_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path)
    spool.append(_event_records("agent.tool_calls", 3))
    spool.append(_event_records("agent.tool_calls", 2), rejected=True)
    spool.close()
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 segment(s), 3 event(s) to replay, 2 rejected" in out
    assert "waiting" in out
    assert "rejected" in out


def test_replay_without_a_broker_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spool = Spool(tmp_path)
    spool.append(_event_records("agent.tool_calls", 2))
    spool.close()
    [port] = free_ports("127.0.0.1", 1)
    argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--bootstrap", f"127.0.0.1:{port}"]
    assert main([*argv, "--connect-timeout", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("agentstream: error: cannot reach Kafka at 127.0.0.1:")
    assert "\n" not in err
    assert Spool(tmp_path).stats().records == 2  # left as it was


@pytest.mark.integration
def test_replay_drains_the_spool_to_the_broker(
    kafka_broker: BrokerHandle,
    kafka_topic: TopicFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = kafka_topic("spool-cli")
    records = _event_records(topic, 25)
    spool = Spool(tmp_path)
    for i in range(0, 25, 5):
        spool.append(records[i : i + 5])
        spool.rotate()  # five segments: more than one replay round takes
    segments = spool.stats().segments
    assert segments == 5
    argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--bootstrap", kafka_broker.bootstrap]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"replayed 25 of 25 event(s) from {segments} segment(s)" in out
    assert Spool(tmp_path).segment_paths() == []

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "group.id": f"cli-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    values: list[bytes | None] = []
    deadline = time.monotonic() + 60
    try:
        consumer.subscribe([topic])
        while len(values) < 25 and time.monotonic() < deadline:
            values += [m.value() for m in consumer.consume(100, 0.5) if not m.error()]
    finally:
        consumer.close()
    assert values == [r.value for r in records]
    assert main(argv) == 0
    assert "nothing to replay" in capsys.readouterr().out
