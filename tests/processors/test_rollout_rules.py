"""Pure rollout rules: which record is current (judge and CLI agree), min_runs before any
verdict, the guards' shared confidence, the transaction's abort on any error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentstream.core.config import RolloutSettings, load_settings
from agentstream.processors.rollouts import RolloutJudge, RolloutStage, judge_stage, latest
from agentstream.processors.rollouts._judge import Decision
from agentstream.schemas import Rollout, RolloutVerdict, Rollup, ScopeKind

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def definition(created: datetime = T0, **kw: Any) -> Rollout:
    fields: dict[str, Any] = {
        "agent_id": "billing", "baseline": "1.0", "candidate": "2.0", "stages": (5, 50, 100),
        "min_stage_s": 60, "guards": ("error_rate <= +5pp",), "min_runs": 20,
        "stage_started_at": created, "created_at": created, "updated_at": created,
        "created_by": "test",
    }  # fmt: skip
    return Rollout(**{**fields, **kw})


def history() -> tuple[list[Rollout], Rollout]:
    """A rollout aborted by hand at wall time T0+2 min, then a PROMOTE the judge decided on
    later event time (T0+5 min) and wrote after it: offset order = list order."""
    start = definition()
    aborted = start.model_copy(
        update={"status": "ABORTED", "updated_at": T0 + timedelta(minutes=2), "reason": "hand"}
    )
    promoted = start.model_copy(
        update={
            "stage_index": 1,
            "stage_started_at": T0 + timedelta(minutes=5),
            "updated_at": T0 + timedelta(minutes=5),
        }
    )
    return [start, aborted, promoted], aborted


def test_a_manual_abort_wins_over_a_later_decided_promote() -> None:
    records, aborted = history()
    assert latest(records) == {"billing": aborted}
    judge = RolloutJudge(RolloutSettings())
    for r in records:
        judge.set_rollout(r)
    assert judge.rollouts["billing"] == aborted


def test_cli_status_and_the_judge_use_the_same_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentstream.cli import _topic_read, rollout

    records, aborted = history()
    assert aborted.status == "ABORTED"
    monkeypatch.setattr(_topic_read, "read_topic", lambda *a, **k: list(records))
    assert rollout._current(load_settings())["billing"] == aborted


def test_newest_time_then_offset_and_a_newer_rollout_replaces_a_stopped_one() -> None:
    start = definition()
    late = start.model_copy(update={"updated_at": T0 + timedelta(minutes=1), "reason": "late"})
    # an older state read after a newer one: the newer stays
    assert latest([late, start])["billing"] == late
    # equal keys: the one read last wins
    same = late.model_copy(update={"reason": "again"})
    assert latest([late, same])["billing"] == same
    records, _ = history()
    fresh = definition(created=T0 + timedelta(minutes=10))
    assert latest([*records, fresh])["billing"] == fresh
    # a stale state of the old rollout read after the new one does not replace it
    assert latest([fresh, records[-1]])["billing"] == fresh


def rollups(version: str, runs: int, calls: int, errors: int) -> Rollup:
    return Rollup(
        resolution="1m", window_start=T0, window_end=T0 + timedelta(minutes=1),
        scope_kind=ScopeKind.AGENT, scope_key=f"billing|{version}", agent_id="billing",
        agent_version=version, count=calls, error=errors, runs_completed=runs,
    )  # fmt: skip


def test_no_rollback_before_min_runs_on_either_side() -> None:
    r = definition()
    clock = int((T0 + timedelta(minutes=2)).timestamp() * 1e6)
    cand, base = [rollups("2.0", 5, 500, 400)], [rollups("1.0", 50, 500, 5)]
    verdict, kind, _, _ = judge_stage(r, cand, base, clock, 0.95)
    assert (verdict, kind) == ("HOLD", "too_few_runs")
    cand = [rollups("2.0", 20, 500, 400)]
    assert judge_stage(r, cand, base, clock, 0.95)[0] == "ROLLBACK"


def test_the_guards_share_the_confidence() -> None:
    """A difference broken at the 95 % bound of one guard is not at 1 - 0.05/3."""
    clock = int((T0 + timedelta(minutes=2)).timestamp() * 1e6)
    base = [rollups("1.0", 50, 1000, 50)]
    one = definition(guards=("error_rate <= +5pp",))
    three = definition(
        guards=("error_rate <= +5pp", "timeout_rate <= +50pp", "run_failure_rate <= +50pp")
    )
    # the least error count broken for one guard at 95 %
    errors = next(
        k for k in range(100, 200)
        if judge_stage(one, [rollups("2.0", 50, 1000, k)], base, clock, 0.95)[0] == "ROLLBACK"
    )  # fmt: skip
    cand = [rollups("2.0", 50, 1000, errors)]
    verdict, _, reason, metrics = judge_stage(three, cand, base, clock, 0.95)
    assert verdict == "HOLD", reason
    assert metrics["error_rate.diff_low"] <= 0.05


class FailingProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("not Kafka")

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")


def test_any_error_inside_the_transaction_aborts_it() -> None:
    stage = RolloutStage.__new__(RolloutStage)
    producer = FailingProducer()
    stage.settings = load_settings()
    stage._producer = producer
    stage._verdicts_topic = stage._rollouts_topic = stage._alerts_topic = "t"
    stage.verdicts = []
    verdict = RolloutVerdict(
        rollout_id=definition().rollout_id, agent_id="billing", baseline="1.0", candidate="2.0",
        verdict="HOLD", stage_index=0, stage_percent=5, reason="r", decided_at=T0,
        stage_started_at=T0,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="not Kafka"):
        stage.publish([Decision(verdict, None)])
    assert producer.calls == ["begin", "abort"]
    assert stage.verdicts == []
