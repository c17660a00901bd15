"""Past alerts: from the ClickHouse ``alerts`` table, or straight from the alerts topic.

An alert *is firing* when the latest state change of its rule and scope is
FIRING; :func:`firing` computes that from any list of alerts, and
:func:`firing_from_clickhouse` in the database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from agentstream.core import kafka
from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError, StorageError
from agentstream.schemas import Alert, AlertState, AvroCodec
from agentstream.sinks.clickhouse import ClickHouseBackend

__all__ = [
    "alerts_from_clickhouse",
    "alerts_from_topic",
    "firing",
    "firing_from_clickhouse",
]

_TABLE = "alerts"
_COLUMNS = ", ".join(Alert.model_fields)


def _to_alert(row: Mapping[str, Any]) -> Alert:
    values = {name: row[name] for name in Alert.model_fields}
    if isinstance(values["alert_id"], uuid.UUID):
        values["alert_id"] = str(values["alert_id"])
    values["channels"] = tuple(values["channels"] or ())
    return Alert.model_validate(values)


def alerts_from_clickhouse(
    backend: ClickHouseBackend, *, since: datetime | None = None, limit: int = 50
) -> list[Alert]:
    """The latest ``limit`` alerts fired at or after ``since``, newest first."""
    where = "WHERE fired_at >= {since:DateTime64(6, 'UTC')}" if since is not None else ""
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        params["since"] = since
    result = backend.query(
        f"SELECT {_COLUMNS} FROM {_TABLE} FINAL {where} "
        "ORDER BY fired_at DESC, alert_id LIMIT {limit:UInt32}",
        params,
    )
    return [_to_alert(row) for row in result.dicts()]


def firing_from_clickhouse(backend: ClickHouseBackend) -> list[Alert]:
    """The FIRING alert of every rule and scope whose latest state change is FIRING."""
    result = backend.query(
        f"SELECT {_COLUMNS} FROM ("
        f"SELECT {_COLUMNS} FROM {_TABLE} FINAL "
        "ORDER BY rule_id, scope_key, fired_at DESC LIMIT 1 BY rule_id, scope_key"
        ") WHERE state = 'FIRING' ORDER BY fired_at DESC"
    )
    return [_to_alert(row) for row in result.dicts()]


def firing(alerts: Iterable[Alert]) -> list[Alert]:
    """Of ``alerts``, the latest of each rule and scope when it is FIRING; newest first."""
    latest: dict[tuple[str, str], Alert] = {}
    for alert in alerts:
        key = (alert.rule_id, alert.scope_key)
        current = latest.get(key)
        if current is None or alert.fired_at >= current.fired_at:
            latest[key] = alert
    live = [a for a in latest.values() if a.state == AlertState.FIRING]
    return sorted(live, key=lambda a: a.fired_at, reverse=True)


def alerts_from_topic(
    settings: Settings,
    *,
    topic: str | None = None,
    since: datetime | None = None,
    timeout_s: float = 10.0,
) -> list[Alert]:
    """Every alert on the alerts topic (read from the start to its current end), oldest first.

    Uses no consumer group and commits nothing. Undecodable messages are skipped.
    Raises :class:`StorageError` when the topic cannot be read in ``timeout_s``.
    """
    name = topic or settings.topics.name("alerts")
    # connection errors surface as StorageError; the tools role keeps librdkafka off stderr
    group = f"agentstream-alerts-reader-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, "tools", {"group.id": group})
    try:
        codec = codec_from_settings(settings, role="consumer")
        return _read_all(consumer, codec, name, since, timeout_s)
    except KafkaException as exc:
        where = settings.kafka.bootstrap_servers
        raise StorageError(f"cannot read topic {name} from {where}: {exc.args[0]}") from exc
    finally:
        consumer.close()


def _read_all(
    consumer: Consumer, codec: AvroCodec, topic: str, since: datetime | None, timeout_s: float
) -> list[Alert]:
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise StorageError(f"topic {topic} does not exist")
    ends: dict[int, int] = {}
    for partition in info.partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        if high > low:
            ends[partition] = high
    if not ends:
        return []
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
    alerts: list[Alert] = []
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise StorageError(f"cannot read topic {topic}: {error}")
            continue
        partition, offset = message.partition() or 0, message.offset() or 0
        if offset + 1 >= ends.get(partition, 0):
            ends.pop(partition, None)
        try:
            alert = codec.decode_model(message.value() or b"", Alert)
        except AgentstreamError:
            continue
        if since is None or alert.fired_at >= since:
            alerts.append(alert)
    if ends:
        raise StorageError(f"timed out reading topic {topic} after {timeout_s:g}s")
    alerts.sort(key=lambda a: a.fired_at)
    return alerts
