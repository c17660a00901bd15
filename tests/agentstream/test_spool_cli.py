"""`agentstream spool status | replay`."""

from __future__ import annotations

import json
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
from tests.support.consume import consume_all


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


@pytest.mark.integration
def test_a_flipped_byte_costs_one_record_and_is_quarantined(
    kafka_broker: BrokerHandle,
    kafka_topic: TopicFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # seen on main: one flipped byte in the first frame of a 100-record segment
    # replayed 0 records and deleted the file ("torn frame")
    topic = kafka_topic("spool-corrupt")
    records = _event_records(topic, 100)
    spool = Spool(tmp_path)
    spool.append(records)
    spool.close()
    [path] = spool.segment_paths()
    data = bytearray(path.read_bytes())
    data[len(b"AGSPOOL2") + 20] ^= 0x01  # one bit, inside the first record's payload
    path.write_bytes(bytes(data))
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    status = capsys.readouterr().out
    assert "99 event(s) to replay" in status
    assert "unreadable byte(s)" in status

    argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--bootstrap", kafka_broker.bootstrap]
    assert main(argv) == 0  # drained: nothing readable is left
    out = capsys.readouterr().out
    assert "replayed 99 of 99 event(s)" in out
    assert "moved to quarantine/" in out
    assert Spool(tmp_path).segment_paths() == []  # everything readable was delivered
    assert [v for _, v in consume_all(kafka_broker.bootstrap, topic, 99)] == [
        r.value for r in records[1:]
    ]

    [bad] = (tmp_path / "quarantine").glob("*.bad")
    frame = len(records[0].encode()) + 12
    assert bad.read_bytes() == bytes(data[8 : 8 + frame])
    meta = json.loads(bad.with_suffix(".json").read_text())
    assert (meta["bytes"], meta["frames"], meta["ranges"]) == (frame, 1, [[8, frame, 1]])
    stats = Spool(tmp_path).stats()
    assert (stats.quarantined_bytes, stats.quarantined_frames) == (frame, 1)
    assert main(["spool", "status", "--spool-dir", str(tmp_path)]) == 0
    assert f"quarantined: {frame} byte(s), 1 frame(s) in 1 file(s)" in capsys.readouterr().out


@pytest.mark.integration
def test_replay_to_a_missing_topic_is_refused_in_one_line(
    kafka_broker: BrokerHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"test.missing.{uuid.uuid4().hex[:10]}"  # auto-creation is off: never created
    spool = Spool(tmp_path)
    spool.append(_event_records(topic, 3))
    spool.close()
    argv = ["spool", "replay", "--spool-dir", str(tmp_path), "--bootstrap", kafka_broker.bootstrap]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"agentstream: error: topic(s) {topic} do not exist on {kafka_broker.bootstrap}; create "
        "them with `agentstream topics create`; the spool is left as it is"
    )
    assert Spool(tmp_path).stats().records == 3
