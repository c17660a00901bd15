"""The rollouts stage's lease on the real broker: one holder among the workers of an app,
handed over when the holder leaves, kept where it is when a worker joins."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from agentstream.core.config import Settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.rollouts._lease import Lease
from tests.support.engine import engine_settings

pytestmark = pytest.mark.integration


def _until(leases: list[Lease], condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: held {[lease.held for lease in leases]}")
        for lease in leases:
            lease.poll(0.1)


def _members(settings: Settings) -> int:
    """Members of the lease group once it is stable (0 while it rebalances)."""
    group = f"{settings.worker.app_id}-rollouts-lease"
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    try:
        described = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:
        return 0
    return len(described.members) if described.state == ConsumerGroupState.STABLE else 0


def test_one_worker_holds_the_lease_and_hands_it_over(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker)
    first, second = Lease(settings, "rollouts"), Lease(settings, "rollouts")
    leases = [first, second]
    for lease in leases:
        lease.open()
    try:
        _until(leases, lambda: any(lease.held for lease in leases), "nobody got the lease")
        # once granted it stays with one of them, poll after poll
        for _ in range(20):
            for lease in leases:
                lease.poll(0.05)
            assert sum(lease.held for lease in leases) == 1
        holder = next(lease for lease in leases if lease.held)
        other = second if holder is first else first

        # a third worker joins: the lease stays where it is (cooperative-sticky)
        third = Lease(settings, "rollouts")
        third.open()
        leases.append(third)
        _until(leases, lambda: _members(settings) == 3, "the third never joined")
        for _ in range(20):
            for lease in leases:
                lease.poll(0.05)
            assert [lease.held for lease in leases].count(True) == 1
            assert holder.held

        # the holder leaves: another one takes over
        holder.close()
        leases.remove(holder)
        _until(leases, lambda: any(lease.held for lease in leases), "nobody took it over")
        assert sum(lease.held for lease in leases) == 1
        assert other.held or third.held
    finally:
        for lease in leases:
            lease.close()
