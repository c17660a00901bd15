"""The one place Kafka clients are configured: every consumer, producer and admin client of
agentstream gets its settings here.

A client's configuration is built in three layers, later ones winning:

1. the connection (``KafkaSettings``: bootstrap servers, client id, SASL/TLS);
2. the defaults of its role (below): what that component needs to be correct;
3. the operator's overrides for that role (``kafka.overrides``, e.g.
   ``AGENTSTREAM_KAFKA__OVERRIDES='{"sink": {"fetch.max.bytes": 1048576}}'``), then the
   caller's ``extra`` (group ids, transactional ids, callbacks).

The client id names the role (``agentstream-sink``), so the broker's logs and quotas
tell the components apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from agentstream.core.config import KafkaRole, Settings
from agentstream.core.errors import ConfigError

__all__ = [
    "ROLES",
    "ConfigValue",
    "Kind",
    "Role",
    "admin_client",
    "client_config",
    "consumer",
    "producer",
]

#: a librdkafka configuration value
ConfigValue = str | int | float | bool
Role = KafkaRole
ROLES: Final[tuple[Role, ...]] = get_args(KafkaRole)

#: read only what is committed; offsets are committed by the component, never automatically
_CONSUMER: Final[Mapping[str, ConfigValue]] = {
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
}
#: idempotent, and the Java clients' key hashing: a run_id lands on the same partition
#: whoever produced it, so the processors see each run's events in order
_PRODUCER: Final[Mapping[str, ConfigValue]] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "compression.type": "lz4",
    "linger.ms": 5,
}


Kind = Literal["consumer", "producer", "admin"]

#: the processors' failover: librdkafka's defaults are 45 s and 60 s; a SIGKILLed worker
#: that does not come back then left its partitions unprocessed for over a minute
#: (``make bench``); both can be overridden per role (``kafka.overrides``)
_PROCESSORS_SESSION_MS: Final = 15_000
_PROCESSORS_TRANSACTION_MS: Final = 20_000

#: what the guarantees rest on: no override may change these
_PROTECTED: Final = frozenset(
    {
        "enable.auto.commit",
        "isolation.level",
        "enable.idempotence",
        "acks",
        "partitioner",
        "transactional.id",
        "group.id",
        "partition.assignment.strategy",
    }
)


def _role_defaults(settings: Settings, role: Role, kind: Kind) -> dict[str, ConfigValue]:
    quiet: dict[str, ConfigValue] = {"log_level": 2} if role in ("tools", "admin") else {}
    if kind == "admin":
        return quiet
    if kind == "consumer":
        conf = {**_CONSUMER, **quiet}
        if role == "processors":
            # the range assignor gives a worker the same partition of every input topic:
            # a run's transitions, tool calls and model calls meet in one process
            conf["partition.assignment.strategy"] = "range"
            # a static member that died holds its partitions this long (librdkafka's
            # heartbeats run on its own threads, so a busy Python loop never expires it)
            conf["session.timeout.ms"] = _PROCESSORS_SESSION_MS
        return conf
    if role == "emitter":
        es = settings.emitter
        return {
            **_PRODUCER,
            "linger.ms": es.linger_ms,
            "compression.type": es.compression,
            "batch.size": es.batch_size_bytes,
            "queue.buffering.max.messages": es.queue_max_messages,
            "queue.buffering.max.kbytes": es.queue_max_kbytes,
            "delivery.timeout.ms": es.delivery_timeout_ms,
            # a topic missing from the metadata fails its messages with _UNKNOWN_TOPIC
            # (spooled, logged once) before they would merely time out
            "topic.metadata.propagation.max.ms": max(1, min(30_000, es.delivery_timeout_ms // 2)),
        }
    if role == "processors":
        # a dead worker's open transaction holds its changelog partitions' last stable
        # offset this long: the next owner's restore waits for it (a batch takes seconds)
        return {**_PRODUCER, **quiet, "transaction.timeout.ms": _PROCESSORS_TRANSACTION_MS}
    return {**_PRODUCER, **quiet}


def client_config(
    settings: Settings, role: Role, kind: Kind, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The librdkafka configuration of a ``kind`` client of ``role``: connection, role
    defaults, the operator's overrides for the role, then ``extra``."""
    conf: dict[str, Any] = dict(settings.kafka.confluent_config())
    conf["client.id"] = f"{settings.kafka.client_id}-{role}"
    conf.update(_role_defaults(settings, role, kind))
    overrides = settings.kafka.overrides.get(role, {})
    protected = sorted(set(overrides) & _PROTECTED)
    if protected:
        raise ConfigError(
            f"AGENTSTREAM_KAFKA__OVERRIDES: {role}: {', '.join(protected)} cannot be overridden "
            "(the exactly-once and no-loss guarantees depend on them)"
        )
    conf.update(overrides)
    conf.update(extra or {})
    return conf


def consumer(settings: Settings, role: Role, extra: Mapping[str, Any] | None = None) -> Any:
    """A ``confluent_kafka.Consumer`` for ``role``; ``extra``: ``group.id`` and the like."""
    from confluent_kafka import Consumer

    return Consumer(client_config(settings, role, "consumer", extra))


def producer(settings: Settings, role: Role, extra: Mapping[str, Any] | None = None) -> Any:
    """A ``confluent_kafka.Producer`` for ``role``; ``extra``: ``transactional.id`` etc."""
    from confluent_kafka import Producer

    return Producer(client_config(settings, role, "producer", extra))


def admin_client(settings: Settings, extra: Mapping[str, Any] | None = None) -> Any:
    """A ``confluent_kafka.admin.AdminClient``."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_config(settings, "admin", "admin", extra))
