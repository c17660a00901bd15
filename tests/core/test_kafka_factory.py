"""The one Kafka client factory: connection, role defaults, operator overrides, extras."""

from __future__ import annotations

import pytest

from agentstream.core import kafka
from agentstream.core.config import load_settings
from agentstream.core.errors import ConfigError


def test_role_defaults_and_client_ids() -> None:
    settings = load_settings(kafka={"bootstrap_servers": "b:9092", "client_id": "acme"})
    sink = kafka.client_config(settings, "sink", "consumer", {"group.id": "g"})
    assert sink["bootstrap.servers"] == "b:9092"
    assert sink["client.id"] == "acme-sink"
    assert sink["isolation.level"] == "read_committed"
    assert sink["enable.auto.commit"] is False
    assert sink["group.id"] == "g"
    processors = kafka.client_config(settings, "processors", "consumer")
    assert processors["partition.assignment.strategy"] == "range"
    # a dead worker's partitions move on in seconds, not librdkafka's 45 s + 60 s
    assert processors["session.timeout.ms"] < 45_000
    txn = kafka.client_config(settings, "processors", "producer")["transaction.timeout.ms"]
    assert isinstance(txn, int)
    assert txn < 60_000
    assert "transaction.timeout.ms" not in kafka.client_config(settings, "sink", "producer")
    emitter = kafka.client_config(settings, "emitter", "producer")
    assert emitter["enable.idempotence"] is True
    assert emitter["acks"] == "all"
    assert emitter["partitioner"] == "murmur2_random"
    assert emitter["linger.ms"] == settings.emitter.linger_ms
    assert "isolation.level" not in emitter


def test_operator_overrides_reach_only_their_role() -> None:
    settings = load_settings(
        kafka={"overrides": {"sink": {"fetch.max.bytes": 1048576}, "processors": {"linger.ms": 2}}}
    )
    assert kafka.client_config(settings, "sink", "consumer")["fetch.max.bytes"] == 1048576
    assert "fetch.max.bytes" not in kafka.client_config(settings, "alerts", "consumer")
    assert kafka.client_config(settings, "processors", "producer")["linger.ms"] == 2
    longer = load_settings(kafka={"overrides": {"processors": {"session.timeout.ms": 45000}}})
    assert kafka.client_config(longer, "processors", "consumer")["session.timeout.ms"] == 45000


@pytest.mark.parametrize("key", ["isolation.level", "enable.auto.commit", "enable.idempotence"])
def test_overrides_cannot_break_the_guarantees(key: str) -> None:
    settings = load_settings(kafka={"overrides": {"processors": {key: "read_uncommitted"}}})
    with pytest.raises(ConfigError, match=key):
        kafka.client_config(settings, "processors", "consumer")


def test_an_unknown_role_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="AGENTSTREAM_KAFKA__OVERRIDES"):
        load_settings(kafka={"overrides": {"snk": {"linger.ms": 2}}})
