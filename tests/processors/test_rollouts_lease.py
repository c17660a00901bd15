"""The rollouts stage's lease on the real broker: one holder among the workers of an app,
handed over when the holder leaves, kept where it is when a worker joins."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from agentstream.core import kafka
from agentstream.core.config import Settings
from agentstream.core.errors import AgentstreamError
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


@contextmanager
def _two_workers(settings: Settings) -> Iterator[tuple[list[Lease], Lease, Lease]]:
    """Two workers' leases, open until one holds it: (the open leases, holder, the other);
    every lease still in the list is closed at the end."""
    first, second = Lease(settings, "rollouts"), Lease(settings, "rollouts")
    leases = [first, second]
    for lease in leases:
        lease.open()
    try:
        _until(leases, lambda: any(lease.held for lease in leases), "nobody got the lease")
        holder = first if first.held else second
        yield leases, holder, second if holder is first else first
    finally:
        for lease in leases:
            lease.close()


def test_one_worker_holds_the_lease_and_hands_it_over(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker)
    with _two_workers(settings) as (leases, holder, other):
        # once granted it stays with one of them, poll after poll
        for _ in range(20):
            for lease in leases:
                lease.poll(0.05)
            assert sum(lease.held for lease in leases) == 1
        assert holder.held

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


def _commit(producer: Any, offsets: list[Any], group: Any) -> None:
    producer.send_offsets_to_transaction(offsets, group, 30)
    producer.commit_transaction(30)


def test_a_stale_holder_cannot_commit(kafka_broker: BrokerHandle) -> None:
    # the group moved on (the holder left, another took the lease): what the old holder
    # writes under its old group metadata is refused by the broker
    settings = engine_settings(kafka_broker)
    with _two_workers(settings) as (leases, holder, other):
        producer = kafka.producer(settings, "rollouts", {"transactional.id": f"t-{id(holder)}"})
        producer.init_transactions(30)
        offsets, group = holder.fence()
        producer.begin_transaction()  # the holder's own transaction goes through
        _commit(producer, offsets, group)

        holder.close()
        leases.remove(holder)
        _until(leases, lambda: other.held, "the other one never took it over")
        producer.begin_transaction()
        with pytest.raises(KafkaException):
            _commit(producer, offsets, group)
        producer.abort_transaction(30)


def test_a_lease_topic_with_more_partitions_is_refused(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker)
    lease = Lease(settings, "rollouts")
    kafka_broker.create_topics([lease.topic], partitions=3)
    with pytest.raises(AgentstreamError, match="has 3 partitions: a lease needs exactly 1"):
        lease.open()
    lease.close()
