"""How the soak wires the worker: its settings, environment, and the group lags."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from agentstream.core.config import Settings, WorkerSettings, settings_env
from agentstream.core.errors import AgentstreamError
from agentstream.devtools.soak.options import LIFECYCLE, ROLLUPS
from agentstream.devtools.soak.population import Population

__all__ = ["group_lag", "overrides", "shift", "worker_env"]


def overrides(home: Path, tag: str, bootstrap: str) -> dict[str, dict[str, Any]]:
    return {
        "kafka": {"bootstrap_servers": bootstrap, "partitions": 6},
        "topics": {"prefix": f"soak-{tag}."},
        "lifecycle": dict(LIFECYCLE),
        "rollups": dict(ROLLUPS),
        "sink": {"consumer_group": f"soak-{tag}-sink"},
        "alerts": {"consumer_group": f"soak-{tag}-alerts"},
        "clickhouse": {"path": home / "chdb", "fault_file": home / "clickhouse.down"},
        # librdkafka holds and retries a partition's messages in order through the broker
        # outage: with the default 30 s, a message timed out at the broker's return is
        # spooled and replayed *behind* later ones of its partition that got through (the
        # Emitter reorders a run's events; reported), and the truth takes production order
        "emitter": {
            "spool_dir": home / "spool",
            "replay_interval_s": 1,
            "delivery_timeout_ms": 600_000,
        },
        # a worker stuck in a client call exits (the fleet restarts it) well within the run
        "worker": {
            "app_id": f"soak-{tag}",
            "data_dir": home / "worker",
            "restore_timeout_s": 60,
            "stuck_after_s": 180,
        },
    }


def worker_env(
    overrides: dict[str, dict[str, Any]], home: Path, index: int, tag: str
) -> dict[str, str]:
    from agentstream.devtools.localstack import free_ports

    worker = {
        "web_port": free_ports("127.0.0.1", 1)[0],
        "ready_file": home / f"worker-{index}.ready",
    }
    if "instance_id" in WorkerSettings.model_fields:  # static membership (issue #11 item 1)
        worker["instance_id"] = f"soak-{tag}-{index}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTREAM_")}
    sections = {**overrides, "worker": {**overrides["worker"], **worker}}
    sections = {k: v for k, v in sections.items() if k != "emitter"}
    return {**env, **settings_env(sections)}


def group_lag(settings: Settings, groups: list[str]) -> dict[str, list[tuple[str, int]]]:
    """Per group, ``(topic, lag)`` of every partition it committed (read-committed ends)."""
    from confluent_kafka import (
        ConsumerGroupTopicPartitions,
        IsolationLevel,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

    from agentstream.core.kafka import admin_client

    admin = admin_client(settings)
    latest: Any = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    try:
        committed: dict[str, list[Any]] = {}
        for group in groups:
            [future] = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=10
            ).values()
            parts = future.result().topic_partitions or []
            committed[group] = [tp for tp in parts if tp.offset >= 0]
        wanted = {(tp.topic, tp.partition) for parts in committed.values() for tp in parts}
        ends: dict[tuple[str, int], int] = {}
        if wanted:
            futures = admin.list_offsets(
                {TopicPartition(t, p): latest for t, p in wanted},
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=10,
            )
            for tp, offsets in futures.items():
                ends[(tp.topic, tp.partition)] = offsets.result().offset
    except KafkaException as exc:
        raise AgentstreamError(f"cannot read consumer offsets: {exc}") from exc
    return {
        group: [(tp.topic, max(0, ends[(tp.topic, tp.partition)] - tp.offset)) for tp in parts]
        for group, parts in committed.items()
    }


def unread_records(settings: Settings, group: str, topics: set[str], wait_s: float = 1.0) -> int:
    """Records a read_committed reader of ``group`` would still get from its committed
    offsets in ``topics`` (looked for ``wait_s``): a partition's lag also counts the
    transaction markers after its last record (a commit marker each, and an aborted
    transaction's marker after a kill or a broker stop), which no one ever consumes."""
    from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

    from agentstream.core.kafka import admin_client

    admin = admin_client(settings)
    [future] = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=10
    ).values()
    parts = [
        TopicPartition(tp.topic, tp.partition, tp.offset)
        for tp in future.result().topic_partitions or []
        if tp.topic in topics and tp.offset >= 0
    ]
    if not parts:
        return 0
    reader = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"{group}-drain-check",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        reader.assign(parts)
        found = 0
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            found += sum(1 for m in reader.consume(500, 0.2) if not m.error())
        return found
    finally:
        reader.close()


def shift(pop: Population, delta: timedelta) -> Population:
    """Every non-backlog event (and the closing instants) ``delta`` later."""
    if not delta:
        return pop
    events = []
    for p in pop.events:
        if p.phase == "backlog" or p.kind == "clock":
            events.append(p)
            continue
        moved = p.event.model_copy(update={"event_time": p.event.event_time + delta})
        events.append(replace(p, event=moved))
    return replace(pop, events=events, closing_at=pop.closing_at + delta, cutoff=pop.cutoff + delta)
