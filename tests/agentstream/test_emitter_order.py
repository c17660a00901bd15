"""Per-run order across divert and replay, against the real broker.

Seen on main: when a replay round finished having claimed fewer than 2
segments, diverting switched off without looking at events spooled meanwhile
into a newer segment; a run went out INIT, PREPARING, REVIEWING, EXECUTING
... in the wrong order. The race is played out deterministically here: the
spool's ``claim`` is wrapped so that an event is emitted at the exact moment
that decides it (right after the first replay round claimed its segment, and
right before the next round claims the newer one).
"""

from __future__ import annotations

import threading
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agentstream import Emitter
from agentstream.core.config import Settings, load_settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.emitter._spool import Spool, SpoolRecord
from agentstream.schemas import AgentState, StateTransition, decode_model, encode_model
from tests.support.consume import consume_all
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

#: upper bound on any wait below (a bound, not a measured threshold)
WAIT_S = 60.0


_wait_until = partial(wait_until, timeout_s=WAIT_S, poll_s=0.01)


def _transition(run: str, to: AgentState, frm: AgentState | None) -> StateTransition:
    return StateTransition(
        tenant_id="t", user_id="u", agent_id="a", agent_version="1", run_id=run,
        from_state=frm, to_state=to,
    )  # fmt: skip


def _arrived(broker: BrokerHandle, topic: str) -> list[StateTransition]:
    return [
        decode_model(value, StateTransition) for _, value in consume_all(broker.bootstrap, topic)
    ]


def _settings(broker: BrokerHandle, spool_dir: Path) -> Settings:
    settings = load_settings(
        kafka={"bootstrap_servers": broker.bootstrap},
        topics={"prefix": f"order.{uuid.uuid4().hex[:8]}."},
        emitter={"spool_dir": spool_dir, "replay_interval_s": 0.2, "delivery_timeout_ms": 10_000},
    )
    broker.create_topics([settings.topics.name("transitions")], 3)
    return settings


def test_a_run_stays_in_order_across_a_replay_of_one_segment(
    kafka_broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(kafka_broker, tmp_path / "spool")
    topic = settings.topics.name("transitions")
    run = f"run-{uuid.uuid4().hex[:8]}"
    init = _transition(run, AgentState.INIT, None)
    preparing = _transition(run, AgentState.PREPARING, AgentState.INIT)
    reviewing = _transition(run, AgentState.REVIEWING, AgentState.PREPARING)
    executing = _transition(run, AgentState.EXECUTING, AgentState.REVIEWING)
    # the run's first two events wait in the spool (one segment), e.g. from an outage
    spool = Spool(settings.emitter.spool_dir)
    spool.append([SpoolRecord(topic, run.encode(), encode_model(e)) for e in (init, preparing)])
    spool.close()

    emitter_box: list[Emitter] = []
    started = threading.Event()
    calls: list[list[Path]] = []
    real_claim = Spool.claim

    def claim(self: Spool, **kwargs: Any) -> Any:
        if len(calls) == 1:
            # the first round is over; before the next one looks at the spool, the agent
            # emits its next event: it must not overtake REVIEWING, spooled meanwhile
            emitter_box[0].emit(executing)
        segments = real_claim(self, **kwargs)
        calls.append([s.path for s in segments])
        if len(calls) == 1:
            assert started.wait(WAIT_S)
            # the agent goes on while its first events are being replayed
            emitter_box[0].emit(reviewing)
        return segments

    monkeypatch.setattr(Spool, "claim", claim)
    emitter = Emitter(settings)
    emitter_box.append(emitter)
    started.set()
    try:
        _wait_until(lambda: len(calls) >= 2, "a second replay round")
        _wait_until(
            lambda: (s := emitter.stats()).replayed + s.delivered >= 4,
            "all four events to be delivered",
        )
        assert emitter.flush(WAIT_S) == 0
    finally:
        emitter.close(WAIT_S)
    assert len(calls[0]) == 1  # the first round took one segment (< 2: the old race)
    arrived = [
        decode_model(v, StateTransition) for _, v in consume_all(kafka_broker.bootstrap, topic)
    ]
    assert [e.to_state for e in arrived] == [
        AgentState.INIT,
        AgentState.PREPARING,
        AgentState.REVIEWING,
        AgentState.EXECUTING,
    ]
    assert [e.event_id for e in arrived] == [
        e.event_id for e in (init, preparing, reviewing, executing)
    ]


def test_an_emitter_started_on_a_waiting_spool_sends_the_spool_first(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    settings = _settings(kafka_broker, tmp_path / "spool")
    topic = settings.topics.name("transitions")
    run = f"run-{uuid.uuid4().hex[:8]}"
    init = _transition(run, AgentState.INIT, None)
    preparing = _transition(run, AgentState.PREPARING, AgentState.INIT)
    spool = Spool(settings.emitter.spool_dir)
    spool.append([SpoolRecord(topic, run.encode(), encode_model(init))])  # left by a crash
    spool.close()
    with Emitter(settings) as emitter:
        emitter.emit(preparing)  # at once: before the background thread replayed anything
        _wait_until(
            lambda: (s := emitter.stats()).replayed + s.delivered >= 2, "both to be delivered"
        )
    arrived = [
        decode_model(v, StateTransition) for _, v in consume_all(kafka_broker.bootstrap, topic)
    ]
    assert [e.event_id for e in arrived] == [init.event_id, preparing.event_id]
