"""Rollups → evaluator → real Kafka alerts topic → dispatcher → a real local webhook receiver."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from agentstream.core.codec import codec_from_settings
from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack.testing import BrokerHandle, TopicFactory
from agentstream.processors.alerts import AlertEvaluator, load_rules
from agentstream.schemas import Alert, Rollup, ScopeKind, encode_model
from agentstream.sinks.alerting import (
    AlertDispatcher,
    Notifier,
    alerts_from_topic,
    build_channels,
    verify_signature,
)
from agentstream.sinks.alerting.testing import Receiver
from tests.support.registry import serve_registry

pytestmark = pytest.mark.integration

SECRET = "hook-secret"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
#: upper bound on dispatcher polls while waiting for something (each waits up to 0.5 s)
MAX_POLLS = 240

PLANNER = (ScopeKind.AGENT, "agent=planner@1.0", {"agent_id": "planner", "agent_version": "1.0"})
CODER = (ScopeKind.AGENT, "agent=coder@2.1", {"agent_id": "coder", "agent_version": "2.1"})
SEARCH = (ScopeKind.TOOL, "tool=search", {"tool": "search"})
LOOKUP = (ScopeKind.TOOL, "tool=lookup", {"tool": "lookup"})
Scope = tuple[ScopeKind, str, dict[str, str]]


def rollup(scope: Scope, minute: int, *, error_pct: float, p95: float = 900.0) -> Rollup:
    kind, key, ids = scope
    start = T0 + minute * MINUTE
    errors = round(200 * error_pct / 100)
    return Rollup(
        resolution="1m",
        window_start=start,
        window_end=start + MINUTE,
        scope_kind=kind,
        scope_key=key,
        count=200,
        error=errors,
        success=200 - errors,
        latency_p95=p95,
        computed_at=start + MINUTE + timedelta(seconds=5),
        **ids,
    )


def the_incident() -> list[Rollup]:
    """15 minutes: 1 % errors everywhere, except planner + search at 10 % in minutes 3-4
    and coder's p95 at 12 s in minutes 6-7."""
    out = []
    for minute in range(15):
        burst = 3 <= minute <= 4
        for scope in (PLANNER, SEARCH):
            out.append(rollup(scope, minute, error_pct=10.0 if burst else 1.0))
        out.append(rollup(CODER, minute, error_pct=1.0, p95=12_000.0 if minute in (6, 7) else 900))
        out.append(rollup(LOOKUP, minute, error_pct=1.0))
    return out


def settings_for(broker: BrokerHandle, receiver: Receiver, **alerts: Any) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
        alerts={
            "webhook_url": receiver.url,
            "webhook_secret": SECRET,
            "consumer_group": f"alerts-{uuid.uuid4().hex[:8]}",
            "delivery_backoff_s": 0.01,
            "delivery_backoff_max_s": 0.05,
            **alerts,
        },
    )


def publish(broker: BrokerHandle, topic: str, payloads: Iterable[bytes]) -> int:
    producer = Producer(broker.client_config())
    count = 0
    for value in payloads:
        producer.produce(topic, value=value)
        count += 1
    assert producer.flush(30) == 0
    return count


def poll_until(dispatcher: AlertDispatcher, done: Any) -> None:
    for _ in range(MAX_POLLS):
        if done():
            return
        dispatcher.poll(0.5)
    raise AssertionError("dispatcher did not get there")


def committed(broker: BrokerHandle, group: str, topic: str) -> int:
    consumer = Consumer(broker.client_config({"group.id": group}))
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=30)
        return int(tp.offset)
    finally:
        consumer.close()


def test_incident_pages_once_per_scope_and_resolves_once(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic("alerts")
    evaluator = AlertEvaluator(load_rules())
    alerts: list[Alert] = []
    for r in the_incident():
        alerts += evaluator.process(r)
    publish(kafka_broker, topic, (encode_model(a) for a in alerts))

    with Receiver() as rx:
        settings = settings_for(kafka_broker, rx)
        notifier = Notifier(build_channels(settings.alerts), settings.alerts)
        dispatcher = AlertDispatcher(settings, notifier, topic=topic)
        try:
            poll_until(dispatcher, lambda: len(rx.requests) >= 6)
            assert notifier.flush(60)
        finally:
            dispatcher.close()
            notifier.close()
        received = [json.loads(r.body) for r in rx.accepted()]
        for request in rx.accepted():
            ts = request.headers["X-Agentstream-Timestamp"]
            sig = request.headers["X-Agentstream-Signature"]
            assert verify_signature(SECRET.encode(), ts, request.body, sig)

    got = sorted((d["rule_id"], d["scope_key"], d["state"]) for d in received)
    assert got == sorted(
        [
            ("agent-error-rate", "agent=planner@1.0", "FIRING"),
            ("agent-error-rate", "agent=planner@1.0", "RESOLVED"),
            ("tool-error-rate", "tool=search", "FIRING"),
            ("tool-error-rate", "tool=search", "RESOLVED"),
            ("agent-p95-latency", "agent=coder@2.1", "FIRING"),
            ("agent-p95-latency", "agent=coder@2.1", "RESOLVED"),
        ]
    )
    assert dispatcher.stats.dispatched == 6
    # slack is routed to by the default rules but not configured: skipped, not stuck
    assert notifier.skipped() == {"slack": 6}


def test_one_percent_traffic_publishes_nothing() -> None:
    evaluator = AlertEvaluator(load_rules())
    rollups = [
        rollup(scope, minute, error_pct=1.0)
        for minute in range(30)
        for scope in (PLANNER, CODER, SEARCH, LOOKUP)
    ]
    assert [a for r in rollups for a in evaluator.process(r)] == []


def test_failing_receiver_gets_each_alert_once_and_the_stream_keeps_flowing(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic("alerts")
    evaluator = AlertEvaluator(load_rules())
    alerts = [a for r in the_incident() for a in evaluator.process(r)]
    total = publish(kafka_broker, topic, (encode_model(a) for a in alerts))
    publish(kafka_broker, topic, [b"not an alert"])

    with Receiver([500, 500, 500], hold=True) as rx:
        settings = settings_for(kafka_broker, rx, channels={})
        group = settings.alerts.consumer_group
        notifier = Notifier(build_channels(settings.alerts), settings.alerts)
        dispatcher = AlertDispatcher(settings, notifier, topic=topic)
        try:
            # the receiver holds the first request: the dispatcher still consumes everything
            poll_until(dispatcher, lambda: dispatcher.stats.consumed == total + 1)
            assert rx.arrived.wait(60)
            assert rx.requests == []
            assert dispatcher.stats.invalid == 1
            dispatcher.commit(wait=True)
            assert committed(kafka_broker, group, topic) < 0  # nothing ended: nothing committed
            rx.release()
            assert notifier.flush(60)
            dispatcher.commit(wait=True)
            assert committed(kafka_broker, group, topic) == total + 1
        finally:
            dispatcher.close()
            notifier.close()
        statuses = [r.status for r in rx.requests]
        accepted_ids = [r.headers["X-Agentstream-Alert-Id"] for r in rx.accepted()]
        stats = notifier.stats()["webhook"]

        # a restarted dispatcher in the same group finds nothing left to send
        notifier2 = Notifier(build_channels(settings.alerts), settings.alerts)
        again = AlertDispatcher(settings, notifier2, topic=topic)
        try:
            for _ in range(6):
                again.poll(0.5)
        finally:
            again.close()
            notifier2.close()
        assert again.stats.consumed == 0
        assert len(rx.requests) == len(statuses)

    assert statuses[:4] == [500, 500, 500, 200]
    assert sorted(accepted_ids) == sorted(a.alert_id for a in alerts)  # each exactly once
    assert (stats.delivered, stats.retries, stats.failed) == (len(alerts), 3, 0)


def test_replayed_alert_is_sent_once(kafka_broker: BrokerHandle, kafka_topic: TopicFactory) -> None:
    topic = kafka_topic("alerts")
    evaluator = AlertEvaluator(load_rules())
    alerts = [a for r in the_incident()[:20] for a in evaluator.process(r)]
    assert len(alerts) == 2  # planner + search FIRING at minute 3
    payloads = [encode_model(a) for a in alerts]
    publish(kafka_broker, topic, payloads + payloads)  # a producer retry / replay
    with Receiver() as rx:
        settings = settings_for(kafka_broker, rx)
        notifier = Notifier(build_channels(settings.alerts), settings.alerts)
        dispatcher = AlertDispatcher(settings, notifier, topic=topic)
        try:
            poll_until(dispatcher, lambda: dispatcher.stats.consumed == 4)
            assert notifier.flush(60)
        finally:
            dispatcher.close()
            notifier.close()
        assert len(rx.accepted()) == 2
    assert dispatcher.stats.duplicates == 2


def test_confluent_framed_alerts_are_delivered_and_read_back(
    kafka_broker: BrokerHandle, kafka_topic: TopicFactory
) -> None:
    topic = kafka_topic("alerts")
    evaluator = AlertEvaluator(load_rules())
    alerts = [a for r in the_incident() for a in evaluator.process(r)]
    with serve_registry() as (url, _handler), Receiver() as rx:
        plain = settings_for(kafka_broker, rx)
        settings = plain.model_copy(
            update={"emitter": plain.emitter.model_copy(update={"registry_url": url})}
        )
        codec = codec_from_settings(settings)  # the Emitter's: Confluent framing
        assert codec.framing == "confluent"
        publish(kafka_broker, topic, (codec.encode_model(a) for a in alerts))
        notifier = Notifier(build_channels(settings.alerts), settings.alerts)
        dispatcher = AlertDispatcher(settings, notifier, topic=topic)
        try:
            poll_until(dispatcher, lambda: len(rx.requests) >= len(alerts))
            assert notifier.flush(60)
        finally:
            dispatcher.close()
            notifier.close()
        read_back = alerts_from_topic(settings, topic=topic)
    assert dispatcher.stats.invalid == 0
    assert dispatcher.stats.dispatched == len(alerts) == 6
    assert sorted(a.alert_id for a in read_back) == sorted(a.alert_id for a in alerts)
