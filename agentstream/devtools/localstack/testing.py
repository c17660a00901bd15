"""Test support: a broker on free ports in a scratch folder, and unique topic names."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agentstream.core.config import LocalKafkaSettings
from agentstream.core.topics import ensure_topics
from agentstream.devtools.localstack._system import free_ports
from agentstream.devtools.localstack.kafka import LocalKafka

__all__ = ["BrokerHandle", "TopicFactory", "temporary_broker", "unique_topic_name"]

#: a librdkafka configuration value
ConfigValue = str | int | float | bool

_ILLEGAL = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_TOPIC = 249


@dataclass(frozen=True)
class BrokerHandle:
    """A broker tests can use: the project-run one (``local``) or an external one."""

    bootstrap: str
    local: LocalKafka | None = None

    @property
    def pid(self) -> int | None:
        """The broker's pid when this session started it, else None."""
        return self.local.pid() if self.local is not None else None

    def client_config(
        self, extra: Mapping[str, ConfigValue] | None = None
    ) -> dict[str, ConfigValue]:
        """A confluent-kafka configuration for this broker, plus ``extra``."""
        return {"bootstrap.servers": self.bootstrap, **(extra or {})}

    def create_topics(
        self, names: Iterable[str] | str, partitions: int = 1, replication: int = 1
    ) -> list[str]:
        """Create the missing topics and wait until they have leaders; those created."""
        wanted = [names] if isinstance(names, str) else list(names)
        return ensure_topics(self.bootstrap, wanted, partitions, replication)


class TopicFactory(Protocol):
    """``kafka_topic(prefix, partitions=1, create=True)`` → a fresh topic name."""

    def __call__(self, prefix: str = "", *, partitions: int = 1, create: bool = True) -> str: ...


def unique_topic_name(*parts: str) -> str:
    """A legal topic name from ``parts`` plus a random suffix."""
    base = ".".join(_ILLEGAL.sub("_", part).strip("._") for part in parts if part) or "topic"
    suffix = uuid.uuid4().hex[:10]
    return f"{base[: _MAX_TOPIC - len(suffix) - 1]}.{suffix}"


@contextmanager
def temporary_broker(
    home: Path, settings: LocalKafkaSettings | None = None
) -> Iterator[BrokerHandle]:
    """A broker in ``home`` on two free ports, stopped on exit.

    Other fields (version, java, heap, ...) come from ``settings``. The jar cache
    stays where ``settings`` has it (``cache_dir``, else its ``home``), so the
    jars are fetched once and shared.
    """
    base = settings if settings is not None else LocalKafkaSettings()
    port, controller_port = free_ports(base.host, 2)
    update = {
        "home": home,
        "port": port,
        "controller_port": controller_port,
        "cache_dir": base.cache_dir or base.home,
    }
    local = LocalKafka(base.model_copy(update=update))
    local.start()
    try:
        yield BrokerHandle(local.bootstrap, local)
    finally:
        local.stop()
