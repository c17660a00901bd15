"""The encoder thread (memory durability): what must raise at the call site still does;
what its full validation refuses is dead-lettered with the reason, never lost;
``flush()`` drains its queue and ``close()`` under a stopped broker spools everything.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from agentstream import DeliveryError, Emitter, EventValidationError, ToolCall, run_context
from agentstream.core.config import LocalKafkaSettings, Settings, load_settings
from agentstream.devtools.localstack import free_ports
from agentstream.devtools.localstack.testing import BrokerHandle, temporary_broker
from agentstream.emitter import _encoder
from agentstream.emitter._callsite import accept
from agentstream.emitter._spool import Spool, SpoolRecord
from agentstream.schemas import InvalidEvent, decode_model
from tests.support.wait import wait_until

#: upper bound on every wait below (a bound, not a measured threshold)
WAIT_S = 120.0
_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.02)


def _settings(bootstrap: str | None, spool_dir: Path, **emitter: object) -> Settings:
    if bootstrap is None:
        [port] = free_ports("127.0.0.1", 1)  # nothing listens there
        bootstrap = f"127.0.0.1:{port}"
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"prefix": f"enc-{uuid.uuid4().hex[:6]}."},
        emitter={
            "spool_dir": spool_dir,
            "delivery_timeout_ms": 1000,
            "replay_interval_s": 0.2,
            **emitter,
        },
    )


def _spooled(spool_dir: Path) -> list[SpoolRecord]:
    spool = Spool(spool_dir)
    return [record for path in spool.segment_paths() for record in Spool.read(path)]


def test_a_missing_or_mistyped_required_field_raises_at_the_call_site(tmp_path: Path) -> None:
    emitter = Emitter(_settings(None, tmp_path / "spool"))
    try:
        assert emitter._encoder is not None  # the default: encoding off the caller's thread
        with run_context(tenant_id="t", agent_id="a"):
            with pytest.raises(EventValidationError) as missing:
                emitter.emit(ToolCall, tool="x", latency_ms=1.0)  # no status
            assert missing.value.fields == ("ToolCall.status",)
            with pytest.raises(EventValidationError) as mistyped:
                emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms="fast")
            assert mistyped.value.fields == ("ToolCall.latency_ms",)
            with pytest.raises(EventValidationError) as bad_tool:
                emitter.emit(ToolCall, tool=17, status="SUCCESS", latency_ms=1.0)
            assert bad_tool.value.fields == ("ToolCall.tool",)
            with pytest.raises(EventValidationError) as in_scope, emitter.tool_call("x") as call:
                call.fallback_used = "sometimes"  # type: ignore[assignment]
            assert in_scope.value.fields == ("ToolCall.fallback_used",)
            assert emitter.stats().emitted == 0
            # a good event is returned at once, and is the event as sent once encoded
            with emitter.tool_call("x", params={"mail": "bob@example.com"}) as ok:
                ok.result_summary = "done"
        _wait_until(lambda: emitter.stats().encoding == 0, "the encoder thread")
        assert ok.event is not None
        assert ok.event.params == '{"mail":"[REDACTED:email]"}'
        assert ok.event.redactions == {"email": 1}
        assert emitter.stats().emitted == 1
    finally:
        emitter.close(0)


def test_an_event_refused_off_thread_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    settings = _settings(None, tmp_path / "spool")
    emitter = Emitter(settings)
    with run_context(tenant_id="t", agent_id="a", run_id="run-1"):
        # the call-site check passes these; the full contract does not
        rule = emitter.emit(ToolCall, tool="x", status="ERROR", latency_ms=1.0)
        not_json = emitter.emit(
            ToolCall,
            tool="y",
            status="SUCCESS",
            latency_ms=1.0,
            params="{not json, bob@example.com",
        )
        good = emitter.emit(ToolCall, tool="z", status="SUCCESS", latency_ms=1.0)
    _wait_until(lambda: emitter.stats().encoding == 0, "the encoder thread")
    stats = emitter.stats()
    assert (stats.emitted, stats.invalid, stats.lost) == (3, 1 + 1, 0)
    assert emitter.flush(WAIT_S) == 0  # the broker is away: done means spooled
    emitter.close(0)
    records = _spooled(settings.emitter.spool_dir)
    assert len(records) == 3  # nothing lost: two dead letters and the good event
    [kept] = [r for r in records if r.topic == settings.topics.name("tool_calls")]
    assert decode_model(kept.value, ToolCall).event_id == good.event_id
    dead = [
        decode_model(r.value, InvalidEvent)
        for r in records
        if r.topic == settings.topics.name("invalid") and r.key == b"run-1"
    ]
    by_event = {letter.event_id: letter for letter in dead}
    assert set(by_event) == {rule.event_id, not_json.event_id}
    assert "status ERROR requires an error_class" in by_event[rule.event_id].reason
    assert "ToolCall.params" in by_event[not_json.event_id].reason
    for letter in dead:
        assert letter.source_topic == settings.topics.name("tool_calls")
        assert letter.run_id == "run-1"
        assert letter.error_type == "EventValidationError"
        assert b"bob@example.com" not in letter.raw  # redacted like any event
    assert b"[REDACTED:email]" in by_event[not_json.event_id].raw


def _consume_ids(bootstrap: str, topic: str, expected: int) -> list[str]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"encoder-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    ids: list[str] = []
    try:
        consumer.subscribe([topic])

        def more() -> bool:
            for message in consumer.consume(1000, 0.2):
                value = message.value()
                if message.error() is None and value is not None:
                    ids.append(decode_model(value, ToolCall).event_id)
            return len(ids) >= expected

        _wait_until(more, f"{expected} events on {topic}")
    finally:
        consumer.close()
    return ids


@pytest.mark.integration
def test_flush_drains_the_queue_in_order_even_past_its_bound(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    # a queue of 8: most events are encoded by callers helping the encoder thread
    settings = _settings(
        kafka_broker.bootstrap, tmp_path / "spool", encoder_queue_max=8, delivery_timeout_ms=30_000
    )
    topic = settings.topics.name("tool_calls")
    kafka_broker.create_topics([topic], partitions=1)
    with Emitter(settings) as emitter:
        sent: list[Any] = []
        with run_context(tenant_id="t", agent_id="a", run_id="run-1"):
            for i in range(3000):
                with emitter.tool_call(f"tool-{i % 7}", params={"i": i}) as call:
                    call.result_summary = f"step {i}"
                sent.append(call.event)
        assert emitter.flush(WAIT_S) == 0
        stats = emitter.stats()
    assert (stats.emitted, stats.delivered, stats.encoding, stats.invalid) == (3000, 3000, 0, 0)
    assert _consume_ids(kafka_broker.bootstrap, topic, 3000) == [e.event_id for e in sent]


@pytest.mark.integration
@pytest.mark.slow
def test_close_under_a_stopped_broker_spools_everything(
    tmp_path: Path, local_kafka_settings: LocalKafkaSettings
) -> None:
    # a bound for a loaded machine, not a measured threshold
    local = local_kafka_settings.model_copy(update={"start_timeout_s": 180.0})
    with temporary_broker(tmp_path / "kafka", local) as broker:
        assert broker.local is not None
        settings = _settings(broker.bootstrap, tmp_path / "spool", delivery_timeout_ms=30_000)
        topic = settings.topics.name("tool_calls")
        broker.create_topics([topic], partitions=1)
        emitter = Emitter(settings)
        with run_context(tenant_id="t", agent_id="a", run_id="warm-up"):
            emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0)
        assert emitter.flush(WAIT_S) == 0
        assert emitter.stats().delivered == 1
        broker.local.stop()
        sent = []
        with run_context(tenant_id="t", agent_id="a", run_id="run-1"):
            for i in range(2000):
                sent.append(emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=i))
        emitter.close(0.5)  # far shorter than the delivery timeout: close spools the rest
        stats = emitter.stats()
        assert (stats.emitted, stats.encoding, stats.lost) == (2001, 0, 0)
        assert stats.delivered + stats.spooled == 2001
        spooled = [decode_model(r.value, ToolCall).event_id for r in _spooled(tmp_path / "spool")]
        assert len(spooled) == stats.spooled == 2000
        assert spooled == [e.event_id for e in sent]


@pytest.mark.parametrize("background", [True, False], ids=["encoder-thread", "synchronous"])
def test_a_caller_given_event_time_is_kept_and_checked(tmp_path: Path, background: bool) -> None:
    # a backfill or replay gives its own event_time (and maybe no event_id)
    settings = _settings(None, tmp_path / "spool", encode_in_background=background)
    emitter = Emitter(settings)
    then = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    try:
        assert (emitter._encoder is not None) is background
        with run_context(tenant_id="t", agent_id="a", run_id="run-1"):
            alone = emitter.emit(
                ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, event_time=then
            )
            given_id = str(uuid.uuid4())
            with_id = emitter.emit(
                ToolCall,
                tool="x",
                status="SUCCESS",
                latency_ms=1.0,
                event_time=then,
                event_id=given_id,
            )
            for bad in ("yesterday", datetime(2026, 1, 2, 3, 4, 5)):  # not a time; naive
                with pytest.raises(EventValidationError) as refused:
                    emitter.emit(
                        ToolCall, tool="x", status="SUCCESS", latency_ms=1.0, event_time=bad
                    )
                assert refused.value.fields == ("ToolCall.event_time",)
    finally:
        emitter.close(0)
    stats = emitter.stats()
    assert (stats.emitted, stats.invalid, stats.lost, stats.encoding) == (2, 0, 0, 0)
    sent = [decode_model(r.value, ToolCall) for r in _spooled(settings.emitter.spool_dir)]
    assert [e.event_time for e in sent] == [then, then]  # as given, not the time of the call
    assert [e.event_id for e in sent] == [alone.event_id, given_id]
    assert uuid.UUID(alone.event_id).version == 4  # made by the emitter
    assert alone == sent[0]  # what emit returned is what was sent
    assert with_id == sent[1]


def _race_emit_against_close(spool_dir: Path, agents: int) -> None:
    settings = _settings(None, spool_dir)
    emitter = Emitter(settings)
    sent: list[list[ToolCall]] = [[] for _ in range(agents)]
    refusals: list[DeliveryError | None] = [None] * agents

    def agent(i: int) -> None:
        with run_context(tenant_id="t", agent_id="a", run_id=f"run-{i}"):
            while True:
                try:
                    event = emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0)
                except DeliveryError as exc:
                    refusals[i] = exc
                    return
                sent[i].append(event)

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(agents)]
    for thread in threads:
        thread.start()
    _wait_until(lambda: all(len(s) >= 50 for s in sent), "every agent emitting")
    emitter.close(0)
    for thread in threads:
        thread.join()
    assert all(isinstance(r, DeliveryError) and "closed" in str(r) for r in refusals)
    accepted = [event.event_id for events in sent for event in events]
    stats = emitter.stats()
    assert (stats.emitted, stats.encoding, stats.invalid, stats.lost) == (len(accepted), 0, 0, 0)
    assert stats.delivered + stats.spooled == stats.emitted  # no broker: all spooled
    spooled = [decode_model(r.value, ToolCall).event_id for r in _spooled(spool_dir)]
    assert sorted(spooled) == sorted(accepted)  # every accepted emit, none other


def test_an_emit_racing_close_is_refused_or_spooled(tmp_path: Path) -> None:
    # the window is narrow: several closes against live emitting threads
    for round_ in range(5):
        _race_emit_against_close(tmp_path / f"spool-{round_}", agents=4)


def test_an_emit_past_the_open_check_when_close_ends_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the race made certain: the emit is held between the open check and the queue
    # until close() has returned, then goes on
    settings = _settings(None, tmp_path / "spool")
    emitter = Emitter(settings)
    checked, closed = threading.Event(), threading.Event()
    real_accept = accept

    def held_accept(*args: Any) -> Any:
        checked.set()
        closed.wait(WAIT_S)
        return real_accept(*args)

    monkeypatch.setattr(_encoder, "accept", held_accept)
    outcome: list[object] = []

    def agent() -> None:
        with run_context(tenant_id="t", agent_id="a", run_id="run-1"):
            try:
                outcome.append(emitter.emit(ToolCall, tool="x", status="SUCCESS", latency_ms=1.0))
            except DeliveryError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=agent)
    thread.start()
    _wait_until(checked.is_set, "the emit past the open check")
    emitter.close(0)
    closed.set()
    thread.join()
    [result] = outcome
    assert isinstance(result, DeliveryError)
    assert "closed" in str(result)
    stats = emitter.stats()
    assert (stats.emitted, stats.encoding, stats.lost) == (0, 0, 0)  # nothing left behind
    assert _spooled(settings.emitter.spool_dir) == []
