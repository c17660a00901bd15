"""`agentstream lag` against the real broker: committed offsets, partition ends, lag."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agentstream.cli import main
from agentstream.cli.lag import group_lag, pipeline_groups
from agentstream.core.config import load_settings
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory

pytestmark = pytest.mark.integration


def _fill(bootstrap: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, f"v{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def _commit(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    consumer.commit(offsets=offsets, asynchronous=False)
    consumer.close()


def test_group_lag_is_end_minus_committed(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic(partitions=3)
    _fill(kafka_broker.bootstrap, topic, {0: 12, 1: 5, 2: 0})
    group, idle = f"g-{uuid.uuid4().hex[:8]}", f"idle-{uuid.uuid4().hex[:8]}"
    _commit(
        kafka_broker.bootstrap, group, [TopicPartition(topic, 0, 4), TopicPartition(topic, 1, 5)]
    )

    report = group_lag({"bootstrap.servers": kafka_broker.bootstrap}, [group, idle])

    assert report[idle] == []
    rows = [(p.topic, p.partition, p.committed, p.end, p.lag) for p in report[group]]
    assert rows == [(topic, 0, 4, 12, 8), (topic, 1, 5, 5, 0)]


def test_the_command_prints_json_for_the_pipeline_groups(
    kafka_broker: BrokerHandle,
    kafka_topic: TopicFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = kafka_topic()
    _fill(kafka_broker.bootstrap, topic, {0: 7})
    app = f"lag-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("AGENTSTREAM_WORKER__APP_ID", app)
    processors = pipeline_groups(load_settings())["processors"]
    assert processors == f"{app}-processors"
    _commit(kafka_broker.bootstrap, processors, [TopicPartition(topic, 0, 3)])

    assert main(["lag", "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {processors, "agentstream-sink", "agentstream-alerts"}
    [row] = [r for r in data[processors] if r["topic"] == topic]
    assert (row["committed"], row["end"], row["lag"]) == (3, 7, 4)


def test_an_unreachable_broker_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTSTREAM_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["lag"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("agentstream: error: cannot read consumer offsets")
    assert err.count("\n") == 1
