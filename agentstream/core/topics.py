"""Idempotent topic creation, for ``agentstream topics create``, the worker, the demo, tests.

The local broker runs with ``auto.create.topics.enable=false``, and production
brokers should too: a topic created on the fly by a producer gets the broker's
default partition count (often 1), which silently caps how far the processors
scale. :func:`ensure_topics` creates what is missing with the configured count
and topic configuration (``cleanup.policy=compact`` for the processors' changelog) and
refuses a topic that exists with another count.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agentstream.core.errors import LocalStackError, TopicPartitionsError

if TYPE_CHECKING:
    from confluent_kafka.admin._metadata import ClusterMetadata

__all__ = ["ensure_topics"]

_POLL_S = 0.1


def _describe(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _ready(metadata: ClusterMetadata, name: str) -> bool:
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or not topic.partitions:
        return False
    return all(part.error is None and part.leader >= 0 for part in topic.partitions.values())


def _check_partitions(
    metadata: ClusterMetadata, names: Iterable[str], partitions: int, setting: str | None
) -> None:
    if setting is None:
        return
    for name in names:
        topic = metadata.topics.get(name)
        if topic is not None and topic.error is None and len(topic.partitions) != partitions:
            raise TopicPartitionsError(name, len(topic.partitions), partitions, setting)


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    replication: int = 1,
    *,
    timeout_s: float = 30.0,
    client_config: Mapping[str, str] | None = None,
    partitions_setting: str | None = "AGENTSTREAM_KAFKA__PARTITIONS",
    topic_config: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the topics in ``names`` that do not exist yet; the names it created.

    A topic that exists with another partition count than ``partitions`` raises
    :class:`TopicPartitionsError` (naming ``partitions_setting``) before anything
    is created: adding partitions would move keys. ``partitions_setting=None``: no
    setting decides the count, an existing topic is taken whatever its count. The
    topics created get ``topic_config`` (topic-level configs such as
    ``{"cleanup.policy": "compact"}``); existing topics are left as they are. Returns
    once every topic is in the metadata with a leader for each partition.
    ``client_config`` adds librdkafka settings (SASL/TLS, e.g.
    ``KafkaSettings.confluent_config()``). Raises LocalStackError on failure.
    """
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    # connection failures become one LocalStackError, not a stream of librdkafka log lines
    conf: dict[str, str | int | float | bool] = {"bootstrap.servers": bootstrap, "log_level": 2}
    conf.update(client_config or {})
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise LocalStackError(f"cannot reach Kafka at {bootstrap}: {_describe(exc)}") from exc
    missing = [name for name in wanted if name not in metadata.topics]
    _check_partitions(metadata, wanted, partitions, partitions_setting)
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(name, partitions, replication, config=dict(topic_config or {}))
                for name in missing
            ],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    continue
                raise LocalStackError(f"cannot create topic {name!r}: {_describe(exc)}") from exc
            created.append(name)
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = admin.list_topics(timeout=max(remaining, 0.5))
        except KafkaException as exc:
            raise LocalStackError(f"cannot reach Kafka at {bootstrap}: {_describe(exc)}") from exc
        pending = [name for name in wanted if not _ready(metadata, name)]
        if not pending:
            # one created by someone else meanwhile (TOPIC_ALREADY_EXISTS) is checked too
            _check_partitions(metadata, wanted, partitions, partitions_setting)
            return created
        if time.monotonic() >= deadline:
            raise LocalStackError(
                f"topics not ready on {bootstrap} after {timeout_s:g} s: {', '.join(pending)}"
            )
        time.sleep(_POLL_S)
