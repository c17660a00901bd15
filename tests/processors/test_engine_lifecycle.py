"""The processors on the real broker: a scripted population of runs, checked output by output."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.schemas import AgentState, InvalidEvent, StateTransition, encode_model
from tests.support.engine import engine_settings, produce, read_committed, run_engine

pytestmark = pytest.mark.integration

S = AgentState
_CTX = {"tenant_id": "acme", "user_id": "u1", "agent_id": "planner", "agent_version": "1.0"}


class Script:
    """Builds transitions with increasing event times."""

    def __init__(self) -> None:
        self.clock = datetime.now(UTC)
        self.records: list[tuple[str, str, bytes]] = []
        self.events: list[StateTransition] = []

    def move(self, run: str, src: AgentState | None, dst: AgentState) -> StateTransition:
        self.clock += timedelta(milliseconds=10)
        event = StateTransition(
            **_CTX, run_id=run, event_time=self.clock, from_state=src, to_state=dst
        )
        self.events.append(event)
        self.records.append(("transitions", run, encode_model(event)))
        return event

    def path(self, run: str, *states: AgentState) -> None:
        previous: AgentState | None = None
        for state in states:
            self.move(run, previous, state)
            previous = state


def test_scripted_population(kafka_broker: BrokerHandle) -> None:
    settings = engine_settings(kafka_broker)
    s = Script()
    s.path("ok", S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING, S.COMPLETED)
    s.path("fails", S.INIT, S.PREPARING, S.EXECUTING, S.FAILED)
    s.path("skip", S.INIT, S.PREPARING, S.EXECUTING)
    s.move("skip", S.EXECUTING, S.COMPLETED)  # rejected: skips REVIEWING
    s.move("skip", S.EXECUTING, S.REVIEWING)
    s.move("skip", S.REVIEWING, S.COMPLETED)
    s.move("noinit", S.INIT, S.PREPARING)  # rejected: first event is not INIT
    s.path("back", S.INIT, S.PREPARING, S.EXECUTING)
    s.move("back", S.EXECUTING, S.PREPARING)  # rejected: backwards
    s.move("back", S.EXECUTING, S.REVIEWING)
    s.move("back", S.REVIEWING, S.COMPLETED)
    s.path("late", S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING, S.COMPLETED)
    s.move("late", S.COMPLETED, S.EXECUTING)  # rejected: after the terminal state
    s.path("mismatch", S.INIT, S.PREPARING)
    s.move("mismatch", S.REVIEWING, S.COMPLETED)  # rejected: from_state is not the run's
    duplicate = s.events[1]  # "ok" PREPARING, sent again with the same event_id
    s.records.append(("transitions", duplicate.run_id, encode_model(duplicate)))
    s.records.append(("transitions", "garbage", b"\x00\x01not avro"))
    s.path("stalls", S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING)  # never reviewed
    produce(settings, s.records)

    run_engine(settings, lambda e: e.stats.consumed == len(s.records) and e.stats.timeouts >= 1)

    lifecycle = [r for r in read_committed(settings, "lifecycle") if isinstance(r, StateTransition)]
    by_run: dict[str, list[AgentState]] = {}
    for event in sorted(lifecycle, key=lambda e: e.event_time):
        by_run.setdefault(event.run_id, []).append(event.to_state)
    full = [S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING, S.COMPLETED]
    assert by_run == {
        "ok": full,
        "fails": [S.INIT, S.PREPARING, S.EXECUTING, S.FAILED],
        "skip": full,
        "back": full,
        "late": full,
        "mismatch": [S.INIT, S.PREPARING],
        "stalls": [S.INIT, S.PREPARING, S.EXECUTING, S.REVIEWING, S.FAILED],
    }
    timeouts = [e for e in lifecycle if e.synthesized]
    assert len(timeouts) == 1
    assert timeouts[0].run_id == "stalls"
    assert timeouts[0].error_category == "TIMEOUT"
    assert timeouts[0].from_state is S.REVIEWING
    # every accepted transition but INIT carries its dwell time
    assert all(e.dwell_ms is not None for e in lifecycle if e.to_state is not S.INIT)
    assert len({e.event_id for e in lifecycle}) == len(lifecycle)

    dead = [r for r in read_committed(settings, "invalid") if isinstance(r, InvalidEvent)]
    reasons = {d.run_id: d.reason for d in dead if d.run_id is not None}
    assert len(dead) == 6
    assert "skips REVIEWING" in reasons["skip"]
    assert "no INIT" in reasons["noinit"]
    assert "backwards" in reasons["back"]
    assert "terminal" in reasons["late"]
    assert "does not match" in reasons["mismatch"]
    garbage = next(d for d in dead if d.key == b"garbage")
    assert garbage.raw == b"\x00\x01not avro"
    assert garbage.source_topic == settings.topics.name("transitions")
    assert Counter(d.error_type for d in dead)["InvalidTransition"] == 5
