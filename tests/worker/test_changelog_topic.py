"""The processors' state topic is created by the one topic helper (core.topics), compacted."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource

from agentstream.core.config import load_settings
from agentstream.core.topics import ensure_topics
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory
from agentstream.worker import ensure_changelog

pytestmark = pytest.mark.integration


def _cleanup_policy(admin: AdminClient, topic: str) -> str:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    return str(configs["cleanup.policy"].value)


def _partitions(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def test_ensure_topics_applies_a_topic_config(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    admin = AdminClient(kafka_broker.client_config())
    compacted, plain = kafka_topic("cfg-compact", create=False), kafka_topic("cfg", create=False)
    topic_config = {"cleanup.policy": "compact"}
    assert ensure_topics(kafka_broker.bootstrap, [compacted], topic_config=topic_config) == [
        compacted
    ]
    assert ensure_topics(kafka_broker.bootstrap, [plain]) == [plain]
    assert _cleanup_policy(admin, compacted) == "compact"
    assert _cleanup_policy(admin, plain) == "delete"  # the broker's default, untouched
    assert ensure_topics(kafka_broker.bootstrap, [compacted], topic_config=topic_config) == []


def test_ensure_changelog_creates_a_compacted_topic_once(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    settings = load_settings(kafka={"bootstrap_servers": kafka_broker.bootstrap})
    admin = AdminClient(kafka_broker.client_config())
    topic = kafka_topic("state", create=False)
    ensure_changelog(settings, topic)
    assert _cleanup_policy(admin, topic) == "compact"
    assert _partitions(admin, topic) == 1
    ensure_changelog(settings, topic)  # exists: nothing to do, no error
    # one created elsewhere with more partitions is taken as it is (the restore reads all)
    wider = kafka_topic("state-wide", partitions=3)
    ensure_changelog(settings, wider)
    assert _partitions(admin, wider) == 3
