"""Alert rules on corrected windows, through the real broker and the real engine.

The expected alerts are computed here, in plain Python over the generated events (no
import of the processors): per-minute error rates of the windows the event clock has
closed, counting each ``event_id`` once, the rule's state machine in event time, and the
notification rule (one FIRING per episode, a RESOLVED only after a FIRING).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentstream.core.config import Settings
from agentstream.devtools.localstack.testing import BrokerHandle
from agentstream.processors.engine import ProcessorEngine
from agentstream.schemas import Alert, CallStatus, ErrorClass, ToolCall, encode_model
from agentstream.worker import ensure_changelog
from tests.support.engine import engine_settings, produce, read_committed

pytestmark = pytest.mark.integration

THRESHOLD = 0.10  # error_rate > 10 %
MIN_SAMPLES = 10
SCOPE = "tenant=acme/agent=planner@1.0"
RULES = f"""
rules:
  - id: planner-errors
    metric: error_rate
    scope: {{per: agent, agent: planner}}
    resolution: 1m
    threshold: {THRESHOLD}
    min_samples: {MIN_SAMPLES}
    cooldown: 0
    channels: [log]
"""
MINUTE = timedelta(minutes=1)
# event times in the recent past (clock sanity), on a minute boundary
T0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)


def call(agent: str, minute: int, second: float, *, error: bool) -> ToolCall:
    return ToolCall(
        event_id=str(uuid.uuid4()),
        tenant_id="acme",
        user_id="u1",
        agent_id=agent,
        agent_version="1.0",
        run_id=f"{agent}-{uuid.uuid4().hex[:8]}",
        tool="search",
        status=CallStatus.ERROR if error else CallStatus.SUCCESS,
        error_class=ErrorClass.RETRYABLE if error else ErrorClass.NONE,
        latency_ms=100.0,
        event_time=T0 + minute * MINUTE + timedelta(seconds=second),
    )


def minute_of(errors: int, minute: int, calls: int = 20) -> list[ToolCall]:
    """``calls`` planner calls spread over one minute, ``errors`` of them failed."""
    return [call("planner", minute, 1 + i * 2.5, error=i < errors) for i in range(calls)]


def pacer(minute: int) -> ToolCall:
    """A call of another agent: it moves the event clock, closing earlier windows."""
    return call("pacer", minute, 1, error=False)


def scenario() -> list[tuple[str, list[ToolCall]]]:
    """Stages: each is produced and fully processed before the next."""
    base = [*minute_of(0, 0), *minute_of(1, 1), *minute_of(2, 2), *minute_of(2, 3), pacer(5)]
    late_error = call("planner", 3, 30.5, error=True)  # m3: 2/20 → 3/21, over 10 %
    late_successes = [call("planner", 3, 31 + i, error=False) for i in range(10)]  # → 3/31
    m6 = minute_of(2, 6)  # 2/20: at the threshold, not over it
    return [
        ("in time, nothing over the threshold", base),
        ("a late error pushes the closed m3 over", [late_error]),
        ("late successes bring m3 back under", late_successes),
        ("m6 closes at the threshold", [*m6, pacer(8)]),
        # a spool replay: one delivered again; counted twice, m6 would be 3/21 and fire
        ("duplicate deliveries", [late_error, m6[0], late_error]),
    ]


# -- the expected alerts, computed independently ---------------------------------------------


@dataclass
class Reference:
    """Feeds the events one by one as the engine reads them; the alerts it must send."""

    seen: set[str] = field(default_factory=set)
    counts: dict[int, list[int]] = field(default_factory=dict)  # minute -> [calls, errors]
    clock: datetime | None = None
    closed: dict[int, tuple[int, int]] = field(default_factory=dict)  # what was evaluated
    paging: bool = False
    paged_start: int | None = None
    fired_minute: int | None = None
    alerts: list[tuple[str, int]] = field(default_factory=list)  # (state, minute)

    def feed(self, event: ToolCall) -> None:
        if event.event_id in self.seen:
            return  # the rollups count an event id once
        self.seen.add(event.event_id)
        self.clock = event.event_time if self.clock is None else max(self.clock, event.event_time)
        if event.agent_id == "planner":
            minute = (event.event_time - T0) // MINUTE
            cell = self.counts.setdefault(minute, [0, 0])
            cell[0] += 1
            cell[1] += event.status == CallStatus.ERROR
        now = {
            m: (c, e) for m, (c, e) in self.counts.items() if T0 + (m + 1) * MINUTE <= self.clock
        }
        if now != self.closed:
            self.closed = now
            self.reconcile()

    def breach(self, minute: int) -> bool:
        calls, errors = self.closed[minute]
        return calls >= MIN_SAMPLES and errors / calls > THRESHOLD

    def reconcile(self) -> None:
        minutes = sorted(self.closed)
        # for 1, resolve_for 1, cooldown 0: an episode is a run of breaching windows (in the
        # order of the windows that exist), cleared by the next window that does not breach
        episodes: list[tuple[int, int | None]] = []  # (first minute, minute that cleared it)
        for i, m in enumerate(minutes):
            if self.breach(m) and (i == 0 or not self.breach(minutes[i - 1])):
                after = [x for x in minutes[i:] if not self.breach(x)]
                episodes.append((m, after[0] if after else None))
        for start, cleared in episodes:
            last = self.fired_minute
            if self.paging and last is not None and start <= last:
                continue  # the episode being paged
            if self.paging:
                self.alerts.append(("RESOLVED", self.first_clear(self.paged_start)))
                self.paging = False
            # its first breaching window after the last FIRING's window (cooldown 0)
            stop = cleared if cleared is not None else minutes[-1] + 1
            points = [m for m in minutes if start <= m < stop and (last is None or m > last)]
            if not points:
                continue
            self.alerts.append(("FIRING", points[0]))
            self.paging, self.paged_start, self.fired_minute = True, start, points[0]
            if cleared is not None:
                self.alerts.append(("RESOLVED", cleared))
                self.paging = False
        if self.paging and not self.breach(minutes[-1]):
            self.alerts.append(("RESOLVED", self.first_clear(self.paged_start)))
            self.paging = False

    def first_clear(self, since: int | None) -> int:
        return next(
            m for m in sorted(self.closed) if (since is None or m >= since) and not self.breach(m)
        )


def expected(stages: Sequence[list[ToolCall]]) -> list[tuple[str, int]]:
    ref = Reference()
    for events in stages:
        for event in events:
            ref.feed(event)
    return ref.alerts


# -- driving the real engine ------------------------------------------------------------------


def _settings(broker: BrokerHandle, tmp_path: Path) -> Settings:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return engine_settings(
        broker,
        partitions=1,  # one event clock: the order the test produces is the order read
        rollups={"allowed_lateness_s": 0},
        alerts={"rules_path": str(rules)},
    )


def _open(settings: Settings, batch_size: int) -> ProcessorEngine:
    engine = ProcessorEngine(settings, batch_size=batch_size)
    engine.open(lambda topic, n: ensure_changelog(settings, topic, n))
    return engine


def _drive(engine: ProcessorEngine, records: int) -> None:
    """Poll until the engine has read (and committed) ``records`` records, knows every
    input partition read to its end, and has committed one more batch since: the windows
    its event clock passed are closed before the next stage (a partition whose end is not
    known yet holds the clock); then until the merge stage has merged the partials they
    gave (the rollups and alerts of those records are out)."""
    deadline = time.monotonic() + 60

    def poll_until(condition: Callable[[], bool], what: str) -> None:
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"the engine did not {what}: {engine.stats}")
            engine.poll(0.2)

    poll_until(lambda: engine.stats.consumed >= records, "read the stage")
    poll_until(lambda: engine.health()["lag"] == 0, "learn its partitions' ends")
    batches = engine.stats.batches
    poll_until(lambda: engine.stats.batches > batches, "commit a batch after")
    poll_until(lambda: engine.settled, "merge its partials")


def _records(events: Sequence[ToolCall]) -> list[tuple[str, str, bytes]]:
    return [("tool_calls", e.run_id, encode_model(e)) for e in events]


def run_stages(
    settings: Settings,
    stages: Sequence[list[ToolCall]],
    *,
    restart_each_stage: bool,
    batch_size: int,
    chunk: int,
) -> list[Alert]:
    """Produce each stage (in chunks of ``chunk`` records) and let one engine (or a fresh
    engine per stage, restored from the changelog) read all of it; the committed alerts."""
    engine: ProcessorEngine | None = None
    read = 0
    try:
        for events in stages:
            if engine is None or restart_each_stage:
                if engine is not None:
                    engine.close()
                engine, read = _open(settings, batch_size), 0
            records = _records(events)
            for i in range(0, len(records), chunk):
                produce(settings, records[i : i + chunk])
            read += len(records)
            _drive(engine, read)
    finally:
        if engine is not None:
            engine.close()
    return [a for a in read_committed(settings, "alerts") if a.scope_key == SCOPE]


def summary(alerts: Sequence[Alert]) -> list[tuple[str, int]]:
    return [(a.state.value, (a.window_start - T0) // MINUTE) for a in alerts]


def shuffled_within_minutes(events: list[ToolCall], rng: random.Random) -> list[ToolCall]:
    """The same events, each minute's in another order (minutes stay in order: which
    events a window holds when it closes does not change)."""
    out: list[ToolCall] = []
    for minute in sorted({(e.event_time - T0) // MINUTE for e in events}):
        group = [e for e in events if (e.event_time - T0) // MINUTE == minute]
        rng.shuffle(group)
        out += group
    return out


def test_corrections_fire_and_resolve_duplicates_send_nothing(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    stages = [events for _, events in scenario()]
    want = expected(stages)
    # the scenario is what it says: the late error fires m3, the successes resolve it
    assert want == [("FIRING", 3), ("RESOLVED", 3)]
    per_stage = [expected(stages[: i + 1]) for i in range(len(stages))]
    assert per_stage[0] == []
    assert per_stage[1] == [("FIRING", 3)]
    assert per_stage[4] == want

    alerts = run_stages(
        _settings(kafka_broker, tmp_path),
        stages,
        restart_each_stage=False,
        batch_size=500,
        chunk=1000,
    )
    assert summary(alerts) == want
    firing, resolved = alerts
    assert firing.value == pytest.approx(3 / 21)
    assert resolved.value <= THRESHOLD  # 3/31, or 3/30 if the successes came in two batches
    assert "correction" in firing.message
    assert len({a.alert_id for a in alerts}) == 2


def test_two_orders_and_batchings_give_the_same_alerts(
    kafka_broker: BrokerHandle, tmp_path: Path
) -> None:
    stages = [events for _, events in scenario()]
    rng = random.Random(11)
    other = [shuffled_within_minutes(events, rng) for events in stages]
    assert [e.event_id for e in other[0]] != [e.event_id for e in stages[0]]
    assert expected(other) == expected(stages)

    first = run_stages(
        _settings(kafka_broker, tmp_path),
        stages,
        restart_each_stage=False,
        batch_size=500,
        chunk=1000,
    )
    # another order, one record per batch, a restart (state from the changelog) per stage
    second = run_stages(
        _settings(kafka_broker, tmp_path), other, restart_each_stage=True, batch_size=1, chunk=7
    )
    assert summary(first) == summary(second) == expected(other)
    assert [a.alert_id for a in first] == [a.alert_id for a in second]
