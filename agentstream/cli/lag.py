"""`agentstream lag`: how far behind each pipeline consumer group is, from the broker.

For the processors' group, the sink's and the alert dispatcher's (and any
``--group``), the committed offset of every partition it has committed, the
partition's end (read-committed: the last stable offset) and the difference.
It asks the broker, so it works from any machine and whether or not the
worker runs. Transactional topics (the processors' outputs) end with a commit
marker, so a consumer that has read everything may show 1 there per partition.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentstream.core.config import Settings, load_settings
from agentstream.core.errors import AgentstreamError
from agentstream.core.kafka import client_config

__all__ = ["PartitionLag", "group_lag", "pipeline_groups", "register"]

_kafka_log = logging.getLogger("agentstream.kafka")


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """One partition of a group: committed offset, end offset, and the lag between them."""

    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - self.committed)


def pipeline_groups(settings: Settings) -> dict[str, str]:
    """The pipeline's consumer groups by role."""
    return {
        "processors": settings.worker.processors_group,
        "sink": settings.sink.consumer_group,
        "alerts": settings.alerts.consumer_group,
    }


def group_lag(
    client_config: Mapping[str, Any], groups: Sequence[str], timeout_s: float = 10.0
) -> dict[str, list[PartitionLag]]:
    """Per group, its committed partitions with their lag (empty: nothing committed yet)."""
    from confluent_kafka import (
        ConsumerGroupTopicPartitions,
        IsolationLevel,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin import OffsetSpec as _OffsetSpec  # type: ignore[attr-defined]

    latest: Any = _OffsetSpec.latest()  # type: ignore[no-untyped-call]

    # connection failures surface as the exception below, not as librdkafka log lines
    conf: dict[str, Any] = {**client_config, "logger": _kafka_log, "log_level": 2}
    admin = AdminClient(conf)
    committed: dict[str, list[Any]] = {}
    try:
        for group in groups:  # the admin API takes one group per request
            [future] = admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
            ).values()
            parts = future.result().topic_partitions or []
            committed[group] = [tp for tp in parts if tp.offset >= 0]
        wanted = {(tp.topic, tp.partition) for parts in committed.values() for tp in parts}
        ends: dict[tuple[str, int], int] = {}
        if wanted:
            futures = admin.list_offsets(
                dict.fromkeys((TopicPartition(t, p) for t, p in wanted), latest),
                isolation_level=IsolationLevel.READ_COMMITTED,
                request_timeout=timeout_s,
            )
            for tp, offsets in futures.items():
                ends[(tp.topic, tp.partition)] = offsets.result().offset
    except KafkaException as exc:
        error: Any = exc.args[0] if exc.args else exc
        detail = error.str() if hasattr(error, "str") else str(exc)
        where = client_config.get("bootstrap.servers", "?")
        raise AgentstreamError(
            f"cannot read consumer offsets from the broker at {where}: {detail}"
        ) from exc
    return {
        group: sorted(
            (
                PartitionLag(
                    group, tp.topic, tp.partition, tp.offset, ends[(tp.topic, tp.partition)]
                )
                for tp in parts
            ),
            key=lambda p: (p.topic, p.partition),
        )
        for group, parts in committed.items()
    }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lag``."""
    lag = subparsers.add_parser(
        "lag",
        help="how far behind the processors, the sink and alert delivery are",
        description=(
            "Committed offsets against partition ends for the pipeline's consumer groups "
            "(processors, sink, alerts), read from the broker. The processors' output topics "
            "are transactional: each partition ends with a commit marker, so a consumer that "
            "has read everything shows a lag of 1 per partition there."
        ),
    )
    lag.add_argument("--group", action="append", default=[], help="another group to show")
    lag.add_argument("--partitions", action="store_true", help="one row per partition")
    lag.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lag.add_argument(
        "--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C"
    )
    lag.set_defaults(handler=_lag)


def _rows(report: dict[str, list[PartitionLag]], per_partition: bool) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for group, parts in report.items():
        if not parts:
            rows.append((group, "(nothing committed yet)", "", "", "", ""))
            continue
        topics: dict[str, list[PartitionLag]] = {}
        for part in parts:
            topics.setdefault(part.topic, []).append(part)
        for topic, items in topics.items():
            if per_partition:
                rows.extend(
                    (group, topic, str(p.partition), f"{p.committed:,}", f"{p.end:,}", f"{p.lag:,}")
                    for p in items
                )
            else:
                rows.append(
                    (
                        group,
                        topic,
                        str(len(items)),
                        f"{sum(p.committed for p in items):,}",
                        f"{sum(p.end for p in items):,}",
                        f"{sum(p.lag for p in items):,}",
                    )
                )
    return rows


def _table(report: dict[str, list[PartitionLag]], per_partition: bool) -> Any:
    from rich.table import Table

    total = sum(p.lag for parts in report.values() for p in parts)
    table = Table(title=f"consumer lag (total {total:,})")
    table.add_column("group")
    table.add_column("topic")
    table.add_column("partition" if per_partition else "partitions", justify="right")
    for column in ("committed", "end", "lag"):
        table.add_column(column, justify="right")
    for row in _rows(report, per_partition):
        lag = row[-1]
        style = "yellow" if lag not in ("", "0") else None
        table.add_row(*row, style=style)
    return table


def _lag(args: argparse.Namespace) -> int:
    settings = load_settings()
    groups = [*dict.fromkeys([*pipeline_groups(settings).values(), *args.group])]
    config = client_config(settings, "tools", "admin")

    def report() -> dict[str, list[PartitionLag]]:
        return group_lag(config, groups)

    if args.json:
        data = {g: [{**asdict(p), "lag": p.lag} for p in parts] for g, parts in report().items()}
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console

    console = Console()
    if args.watch is None:
        console.print(_table(report(), args.partitions))
        return 0
    from rich.live import Live

    try:
        with Live(_table(report(), args.partitions), console=console) as live:
            while True:
                time.sleep(args.watch)
                live.update(_table(report(), args.partitions))
    except KeyboardInterrupt:
        return 0
