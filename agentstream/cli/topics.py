"""`agentstream topics create`: every agentstream topic, with the configured partitions.

Brokers should run with topic auto-creation off (the local one does): a topic a
producer creates on the fly gets the broker's default partition count. This
command (and the worker at start) creates every missing topic with
``kafka.partitions`` / ``kafka.replication_factor`` and refuses, naming the
topic, one that exists with another partition count.
"""

from __future__ import annotations

import argparse

from agentstream.core.config import load_settings

__all__ = ["register"]


def _create(args: argparse.Namespace) -> int:
    from agentstream.core.topics import ensure_topics

    settings = load_settings()
    bootstrap = args.bootstrap or settings.kafka.bootstrap_servers
    names = list(settings.topics.all().values())
    created = ensure_topics(
        bootstrap,
        names,
        partitions=settings.kafka.partitions,
        replication=settings.kafka.replication_factor,
        timeout_s=args.timeout,
        client_config={**settings.kafka.confluent_config(), "bootstrap.servers": bootstrap},
    )
    partitions = settings.kafka.partitions
    if created:
        print(
            f"created {len(created)} topic(s) with {partitions} partition(s) on {bootstrap}: "
            + ", ".join(created)
        )
    else:
        print(f"all {len(names)} topic(s) exist with {partitions} partition(s) on {bootstrap}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``topics create``."""
    parser = subparsers.add_parser(
        "topics",
        help="create agentstream's Kafka topics",
        description="Manage agentstream's Kafka topics (topics.*, kafka.partitions).",
    )
    actions = parser.add_subparsers(dest="topics_action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create every missing topic with the configured partitions",
        description="Create every agentstream topic that does not exist, with kafka.partitions "
        "partitions and kafka.replication_factor replicas; refuse a topic that exists with "
        "another partition count (adding partitions would move run keys).",
    )
    create.add_argument("--bootstrap", help="broker address (default: kafka.bootstrap_servers)")
    create.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the broker (30)"
    )
    create.set_defaults(handler=_create)
