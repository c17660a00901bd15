"""Fixtures shared by the whole suite.

Kafka: ``kafka_broker`` is one real broker per test session, started on free
ports in a temporary folder (the jar cache is shared with ``agentstream kafka``,
so jars are fetched at most once per machine). Set
``AGENTSTREAM_TEST_KAFKA_BOOTSTRAP=host:port`` to use an already-running broker
instead. ``kafka_topic`` makes a fresh topic per call.

ClickHouse: ``chdb_path`` is one embedded data folder per session (chdb holds one
folder per process); ``clickhouse`` is the real engine with a fresh database per test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentstream.core.config import ClickHouseSettings, LocalKafkaSettings, load_settings
from agentstream.devtools.localstack.testing import (
    BrokerHandle,
    TopicFactory,
    temporary_broker,
    unique_topic_name,
)
from agentstream.sinks.clickhouse import ClickHouseBackend, open_backend

#: ``host:port`` of a running broker the tests should use instead of starting one
KAFKA_BOOTSTRAP_ENV = "AGENTSTREAM_TEST_KAFKA_BOOTSTRAP"


# -- Kafka ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def local_kafka_settings(pytestconfig: pytest.Config) -> LocalKafkaSettings:
    """The configured local-broker settings, with the jar cache as an absolute path."""
    settings = load_settings().local_kafka
    cache = (settings.cache_dir or settings.home).expanduser()
    if not cache.is_absolute():
        cache = pytestconfig.rootpath / cache
    return settings.model_copy(update={"cache_dir": cache})


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory, local_kafka_settings: LocalKafkaSettings
) -> Iterator[BrokerHandle]:
    """A running broker for the session: started here, or the one named by the env."""
    external = os.environ.get(KAFKA_BOOTSTRAP_ENV, "").strip()
    if external:
        yield BrokerHandle(external)
        return
    with temporary_broker(tmp_path_factory.mktemp("kafka"), local_kafka_settings) as broker:
        yield broker


@pytest.fixture
def kafka_topic(kafka_broker: BrokerHandle, request: pytest.FixtureRequest) -> TopicFactory:
    """``kafka_topic(prefix="", *, partitions=1, create=True)`` → a new, unique topic name."""

    def make(prefix: str = "", *, partitions: int = 1, create: bool = True) -> str:
        name = unique_topic_name("test", prefix or request.node.name)
        if create:
            kafka_broker.create_topics([name], partitions)
        return name

    return make


# -- ClickHouse ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded data folder per test session (chdb holds one folder per process)."""
    return tmp_path_factory.mktemp("chdb")


@pytest.fixture
def clickhouse(chdb_path: Path) -> Iterator[ClickHouseBackend]:
    """The embedded engine with a fresh database for this test."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    backend = open_backend(ClickHouseSettings(path=chdb_path, database=database))
    try:
        yield backend
    finally:
        backend.command(f"DROP DATABASE IF EXISTS {database}")
        backend.close()
