"""Which worker of a deployment runs a stage that must run once: a lease from Kafka.

The lease is partition 0 of a one-partition topic (``<prefix><app_id>-<name>-lease``,
empty) that every worker's lease consumer subscribes to in one group
(``<app_id>-<name>-lease``): the group coordinator gives the partition to one member, so
one worker holds the lease at a time, and a member that leaves or dies (after its
session timeout) hands it to another. The cooperative-sticky assignor keeps the lease
where it is when a worker joins.

Between the group's decision and the holder's next poll two workers may both believe
they hold it: what a leased stage writes must be idempotent (the rollouts stage's
verdict ids are fixed by the stage they judge).
"""

from __future__ import annotations

import logging
from typing import Any

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.topics import ensure_topics

__all__ = ["Lease"]

log = logging.getLogger("agentstream.processors.rollouts")


class Lease:
    """:meth:`open`, then :meth:`poll` (often: it serves the group's callbacks)."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings
        app = settings.worker.app_id
        self.topic = f"{settings.topics.prefix}{app}-{name}-lease"
        self._consumer = kafka.consumer(
            settings,
            "rollouts",
            {
                "group.id": f"{app}-{name}-lease",
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
            },
        )
        self._held = False

    def open(self) -> None:
        """Create the lease topic if needed, join the group."""
        ensure_topics(
            self.settings.kafka.bootstrap_servers,
            [self.topic],
            partitions=1,
            replication=self.settings.kafka.replication_factor,
            client_config=kafka.client_config(self.settings, "admin", "admin"),
            partitions_setting=None,  # one partition, whatever the inputs have
        )
        self._consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    @property
    def held(self) -> bool:
        """This worker holds the lease (as of the last :meth:`poll`)."""
        return self._held

    def poll(self, timeout: float = 0.0) -> bool:
        """Serve the group (waiting up to ``timeout`` s); whether this worker holds it."""
        for message in self._consumer.consume(1, timeout):
            if message.error() and message.error().fatal():
                log.error("lease %s: %s", self.topic, message.error().str())
                self._held = False
        return self._held

    def close(self) -> None:
        """Leave the group: another worker gets the lease at once."""
        self._held = False
        self._consumer.close()

    def _assigned(self, _consumer: Any, partitions: list[Any]) -> None:
        if any(tp.topic == self.topic for tp in partitions):
            self._held = True
            log.info("lease %s: held by this worker", self.topic)

    def _revoked(self, _consumer: Any, partitions: list[Any]) -> None:
        if any(tp.topic == self.topic for tp in partitions) and self._held:
            self._held = False
            log.info("lease %s: handed over", self.topic)

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._revoked(consumer, partitions)
