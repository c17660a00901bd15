"""EvalResult and Feedback from the Emitter's topics to their tables through the real broker
and the real engine; the sink is their only gate, so bad records are dead-lettered."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from agentstream import run_context
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.sinks.clickhouse import ClickHouseBackend
from agentstream.sinks.consumer import SinkStats, SinkWorker
from agentstream.testing import InMemoryEmitter
from tests.sinks.test_sink_worker_kafka import TIMEOUT_S, create_topics, make_settings

pytestmark = pytest.mark.integration


def test_eval_results_and_feedback_reach_their_tables(
    kafka_broker: BrokerHandle, clickhouse: ClickHouseBackend
) -> None:
    settings = make_settings(kafka_broker)
    create_topics(kafka_broker, settings)
    emitter = InMemoryEmitter(settings)
    with run_context(tenant_id="acme", agent_id="planner", agent_version="2.0", run_id="r-1"):
        for n in range(6):
            emitter.eval_result(
                "smoke", f"t-{n}", correct=n % 2 == 0, latency_ms=10.0 * n, got=f"mail x{n}@ex.com"
            )
        emitter.feedback(5, "great")
        emitter.feedback(1)
    producer = Producer(kafka_broker.client_config({"linger.ms": 5}))
    for message in emitter.messages:
        producer.produce(message.topic, key=message.key, value=message.value)
    producer.produce(settings.topics.name("feedback"), key=b"r-1", value=b"\xc3\x01garbage")
    assert producer.flush(30) == 0

    worker = SinkWorker(settings, backend=clickhouse)

    def done(stats: SinkStats) -> bool:
        return stats.stored.get("eval_results", 0) >= 6 and stats.stored.get("feedback", 0) >= 2

    worker.run_until(done, TIMEOUT_S)
    worker.run_until(lambda stats: stats.dead_lettered >= 1, TIMEOUT_S)
    worker.close()
    assert worker.stats.dead_lettered == 1
    rows = clickhouse.query(
        "SELECT task_id, correct, got FROM eval_results_dedup ORDER BY task_id"
    ).rows
    assert [(r[0], bool(r[1])) for r in rows] == [(f"t-{n}", n % 2 == 0) for n in range(6)]
    assert all(r[2].startswith("mail [REDACTED:email]") for r in rows)
    scores = clickhouse.query("SELECT satisfaction FROM feedback_dedup ORDER BY 1").rows
    assert [r[0] for r in scores] == [1, 5]
    [letter] = clickhouse.query("SELECT source_topic, error_type FROM invalid_events FINAL").rows
    assert letter == (settings.topics.name("feedback"), "CodecError")
