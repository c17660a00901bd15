"""Topics: no broker auto-creation; ``agentstream topics create``; an Emitter before its topic.

Seen on main: an Emitter or a spool replay that ran before the worker created the
topics got broker-auto-created topics with one partition, silently capping scale.
"""

from __future__ import annotations

import logging
import uuid
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from agentstream import Emitter, ToolCall, run_context
from agentstream.cli import main
from agentstream.core.config import load_settings
from agentstream.core.errors import TopicPartitionsError
from agentstream.core.topics import ensure_topics
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory
from agentstream.schemas import decode_model
from tests.support.consume import consume_all
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

#: upper bound on any wait below (a bound, not a measured threshold)
WAIT_S = 60.0


_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.02)


def _partitions(bootstrap: str) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def test_the_local_broker_does_not_create_topics_on_produce(kafka_broker: BrokerHandle) -> None:
    topic = f"test.autocreate.{uuid.uuid4().hex[:10]}"
    reports: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "topic.metadata.propagation.max.ms": 500,
            "message.timeout.ms": 20_000,
        }
    )
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: reports.append(err))
    producer.flush(WAIT_S)
    [error] = reports
    assert error is not None
    assert error.code() in (KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART)
    assert topic not in _partitions(kafka_broker.bootstrap)


def test_topics_create_makes_every_topic_with_the_configured_partitions(
    kafka_broker: BrokerHandle, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"tc.{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("AGENTSTREAM_TOPICS__PREFIX", prefix)
    monkeypatch.setenv("AGENTSTREAM_KAFKA__PARTITIONS", "4")
    names = list(load_settings().topics.all().values())
    assert main(["topics", "create"]) == 0
    assert f"created {len(names)} topic(s) with 4 partition(s)" in capsys.readouterr().out
    partitions = _partitions(kafka_broker.bootstrap)
    assert {name: partitions.get(name) for name in names} == dict.fromkeys(names, 4)
    assert main(["topics", "create"]) == 0  # idempotent
    assert f"all {len(names)} topic(s) exist" in capsys.readouterr().out


def test_a_topic_with_another_partition_count_is_refused(
    kafka_broker: BrokerHandle,
    kafka_topic: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"tp.{uuid.uuid4().hex[:8]}."
    settings = load_settings(topics={"prefix": prefix})
    one = settings.topics.name("transitions")
    kafka_broker.create_topics([one], 1)  # e.g. auto-created by an old broker
    with pytest.raises(TopicPartitionsError) as info:  # what the worker calls at start
        ensure_topics(kafka_broker.bootstrap, settings.topics.all().values(), partitions=6)
    assert (info.value.topic, info.value.actual, info.value.wanted) == (one, 1, 6)
    monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("AGENTSTREAM_TOPICS__PREFIX", prefix)
    assert main(["topics", "create"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"agentstream: error: topic {one!r} has 1 partition(s), AGENTSTREAM_KAFKA__PARTITIONS "
        "wants 6; refusing to change it (adding partitions moves run keys to other partitions): "
        "set AGENTSTREAM_KAFKA__PARTITIONS=1, or delete and recreate the topic"
    )
    # refused before anything was created, and the topic was not touched
    partitions = _partitions(kafka_broker.bootstrap)
    assert partitions[one] == 1
    assert not [name for name in partitions if name.startswith(prefix) and name != one]


def test_an_emitter_before_its_topic_spools_says_so_once_then_replays(
    kafka_broker: BrokerHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"te.{uuid.uuid4().hex[:8]}."
    settings = load_settings(
        kafka={"bootstrap_servers": kafka_broker.bootstrap, "partitions": 3},
        topics={"prefix": prefix},
        emitter={
            "spool_dir": tmp_path / "spool",
            "delivery_timeout_ms": 2_000,
            "replay_interval_s": 0.2,
        },
    )
    topic = settings.topics.name("tool_calls")
    caplog.set_level(logging.ERROR, logger="agentstream.emitter")
    sent = []
    with Emitter(settings) as emitter, run_context(tenant_id="t", agent_id="a", run_id="r-1"):
        for i in range(5):
            sent.append(emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i))
        _wait_until(lambda: emitter.stats().spooled >= 5, "the events to be spooled")
        for i in range(5, 10):  # diverted straight to the spool now
            sent.append(emitter.emit(ToolCall, tool=f"t{i}", status="SUCCESS", latency_ms=i))
        assert emitter.flush(WAIT_S) == 0
        _wait_until(lambda: emitter.stats().spooled >= 10, "the later events to be spooled")
        assert emitter.stats().replayed == 0
        assert topic not in _partitions(kafka_broker.bootstrap)  # nobody created it

        monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
        monkeypatch.setenv("AGENTSTREAM_TOPICS__PREFIX", prefix)
        monkeypatch.setenv("AGENTSTREAM_KAFKA__PARTITIONS", "3")
        assert main(["topics", "create"]) == 0
        _wait_until(lambda: emitter.stats().replayed >= 10, "the spool to be replayed")
    told = [r.getMessage() for r in caplog.records if "does not exist" in r.getMessage()]
    assert len(told) == 1, told
    assert f"topic {topic!r} does not exist" in told[0]
    assert "agentstream topics create" in told[0]
    assert _partitions(kafka_broker.bootstrap)[topic] == 3
    arrived = [decode_model(v, ToolCall) for _, v in consume_all(kafka_broker.bootstrap, topic)]
    assert [e.event_id for e in arrived] == [e.event_id for e in sent]  # one run: in order
