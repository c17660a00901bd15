"""Fixtures shared by the whole suite.

Kafka: ``kafka_broker`` is one real broker per test session, started on free
ports in a temporary folder (the jar cache is shared with ``agentstream kafka``,
so jars are fetched at most once per machine). Set
``AGENTSTREAM_TEST_KAFKA_BOOTSTRAP=host:port`` to use an already-running broker
instead. ``kafka_topic`` makes a fresh topic per call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest (import mode "prepend") puts this folder first on sys.path because it has no
# __init__.py, so the test folders named like our packages (tests/agentstream, tests/sinks,
# ...) would shadow the real packages as namespace packages. The project root goes first.
# Setting ``pythonpath = ["."]`` in [tool.pytest.ini_options] makes this line redundant.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

from agentstream.config import LocalKafkaSettings, load_settings  # noqa: E402
from agentstream.localstack.testing import (  # noqa: E402
    BrokerHandle,
    TopicFactory,
    temporary_broker,
    unique_topic_name,
)

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
