"""The rollout judge: per stage, candidate versus baseline on the final rollups.

Pure and deterministic (no clock, no randomness): the same rollouts and rollups, in the
same order, give the same verdicts whatever the batching.

* The stage's figures are the rollups (``rollouts.resolution``, AGENT scopes, every tenant)
  of the two versions whose window starts at or after the stage's start.
* Event time drives it: an agent's clock is the newest window end seen among its two
  versions' rollups. A stage is judged when a newer window arrives (so every window up
  to the clock is complete), on the windows that ended by then.
* Verdicts: HOLD while a side has fewer than ``min_runs`` ended runs (no verdict either
  way on a handful of runs); then ROLLBACK as soon as one guard is broken at its bound;
  otherwise HOLD while ``min_stage_s`` of event time has not elapsed, or while a guard is
  not yet decided at its bound; PROMOTE when every guard holds. Promoting into the last
  stage (100 %) completes the rollout.
* Each of the ``k`` guards is judged at confidence ``1 - (1 - confidence) / k``
  (Bonferroni), so one look's chance that any guard errs stays below ``1 - confidence``.
  Caveat: a stage is looked at again at every new window against the same bound, and
  repeated looks raise the chance of a wrong verdict over the stage above that figure
  (no alpha spending here); ``min_runs`` and ``min_stage_s`` limit, not remove, it.
* A HOLD is emitted when its reason's kind changes within a stage (not on every window).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from agentstream.core.config import RolloutSettings
from agentstream.processors._clock import to_us
from agentstream.processors.rollouts._bounds import newcombe, quantile_bounds, wilson
from agentstream.processors.rollouts._guards import Guard, parse_guards
from agentstream.processors.rollouts._latest import supersedes
from agentstream.processors.rollups import LatencySketch
from agentstream.schemas import Rollout, RolloutVerdict, Rollup, ScopeKind, VerdictKind

__all__ = [
    "VERDICT_NAMESPACE",
    "Decision",
    "GuardResult",
    "RolloutJudge",
    "guard_confidence",
    "judge_stage",
]

#: verdict ids: ``uuid5(VERDICT_NAMESPACE, "<rollout_id>/<stage>/<verdict>/<kind>")``
VERDICT_NAMESPACE = uuid.UUID("0c6b7c1e-8a4f-4e0b-b2a5-7d9e3f1a6c42")


@dataclass(frozen=True)
class GuardResult:
    guard: Guard
    state: str  # holds | broken | undecided | no data
    detail: str


@dataclass(frozen=True)
class Decision:
    """A verdict and, for PROMOTE / ROLLBACK, the rollout's new state to publish."""

    verdict: RolloutVerdict
    state: Rollout | None


def _sum(rollups: Iterable[Rollup], figure: str) -> int:
    return sum(getattr(r, figure) for r in rollups)


def _sketch(rollups: Iterable[Rollup]) -> LatencySketch | None:
    merged: LatencySketch | None = None
    for r in rollups:
        if r.latency_sketch is None:
            continue
        sketch = LatencySketch.from_bytes(r.latency_sketch)
        if merged is None:
            merged = sketch
        else:
            merged.merge(sketch)
    return merged


def _compare(op: str, cand: tuple[float, float], base: tuple[float, float], factor: float) -> str:
    """Relative guard on two intervals: ``candidate op baseline * factor``."""
    (c_lo, c_hi), (b_lo, b_hi) = cand, base
    if op == "<=":
        return (
            "holds" if c_hi <= b_lo * factor else "broken" if c_lo > b_hi * factor else "undecided"
        )
    return "holds" if c_lo >= b_hi * factor else "broken" if c_hi < b_lo * factor else "undecided"


def _judge_guard(
    guard: Guard,
    cand: list[Rollup],
    base: list[Rollup],
    confidence: float,
    metrics: dict[str, float],
) -> GuardResult:
    m = guard.metric
    name = m.name
    if m.numerator is not None and m.denominator is not None:
        kc, nc = sum(map(m.numerator, cand)), sum(map(m.denominator, cand))
        kb, nb = sum(map(m.numerator, base)), sum(map(m.denominator, base))
        if nc == 0 or nb == 0:
            return GuardResult(guard, "no data", f"{guard}: no {m.description} yet")
        metrics[f"{name}.candidate"], metrics[f"{name}.baseline"] = kc / nc, kb / nb
        if guard.unit == "pp":
            d, lo, hi = newcombe(kc, nc, kb, nb, confidence)
            metrics[f"{name}.diff"], metrics[f"{name}.diff_low"] = d, lo
            metrics[f"{name}.diff_high"] = hi
            a = guard.amount / 100
            if guard.op == "<=":
                state = "holds" if hi <= a else "broken" if lo > a else "undecided"
            else:
                state = "holds" if lo >= a else "broken" if hi < a else "undecided"
            detail = (
                f"{guard}: {state} (candidate {kc / nc:.2%}, baseline {kb / nb:.2%}, "
                f"difference {d * 100:+.2f}pp, {confidence:.1%} "
                f"[{lo * 100:+.2f}, {hi * 100:+.2f}]pp)"
            )
            return GuardResult(guard, state, detail)
        ci_c, ci_b = wilson(kc, nc, confidence), wilson(kb, nb, confidence)
    else:
        q = m.quantile if m.quantile is not None else 0.5
        sc, sb = _sketch(cand), _sketch(base)
        qc = quantile_bounds(sc, q, confidence) if sc is not None else None
        qb = quantile_bounds(sb, q, confidence) if sb is not None else None
        if qc is None or qb is None:
            return GuardResult(guard, "no data", f"{guard}: no latencies yet")
        metrics[f"{name}.candidate"], metrics[f"{name}.baseline"] = qc[0], qb[0]
        ci_c, ci_b = (qc[1], qc[2]), (qb[1], qb[2])
    metrics[f"{name}.candidate_low"], metrics[f"{name}.candidate_high"] = ci_c
    metrics[f"{name}.baseline_low"], metrics[f"{name}.baseline_high"] = ci_b
    state = _compare(guard.op, ci_c, ci_b, 1 + guard.amount / 100)
    detail = (
        f"{guard}: {state} (candidate {metrics[f'{name}.candidate']:.4g} "
        f"[{ci_c[0]:.4g}, {ci_c[1]:.4g}], baseline {metrics[f'{name}.baseline']:.4g} "
        f"[{ci_b[0]:.4g}, {ci_b[1]:.4g}])"
    )
    return GuardResult(guard, state, detail)


def guard_confidence(confidence: float, guards: int) -> float:
    """Each guard's confidence when ``guards`` share ``confidence`` (Bonferroni)."""
    return 1 - (1 - confidence) / max(1, guards)


def judge_stage(
    rollout: Rollout,
    cand: list[Rollup],
    base: list[Rollup],
    clock_us: int,
    confidence: float,
) -> tuple[VerdictKind, str, str, dict[str, float]]:
    """``(verdict, kind, reason, metrics)`` of the current stage at event time ``clock_us``;
    ``kind`` names the reason's kind (``broken``, ``too_few_runs``, ``too_early``,
    ``undecided``, ``promoted``)."""
    metrics: dict[str, float] = {
        "runs.candidate": float(_sum(cand, "runs_completed") + _sum(cand, "runs_failed")),
        "runs.baseline": float(_sum(base, "runs_completed") + _sum(base, "runs_failed")),
        "calls.candidate": float(_sum(cand, "count")),
        "calls.baseline": float(_sum(base, "count")),
        "elapsed_s": max(0, clock_us - to_us(rollout.stage_started_at)) / 1e6,
    }
    runs_c, runs_b = metrics["runs.candidate"], metrics["runs.baseline"]
    if min(runs_c, runs_b) < rollout.min_runs:
        reason = (
            f"too few runs: candidate {runs_c:.0f}, baseline {runs_b:.0f} ended runs "
            f"of the {rollout.min_runs} each side needs"
        )
        return "HOLD", "too_few_runs", reason, metrics
    guards = parse_guards(rollout.guards)
    per_guard = guard_confidence(confidence, len(guards))
    results = [_judge_guard(g, cand, base, per_guard, metrics) for g in guards]
    broken = [r for r in results if r.state == "broken"]
    if broken:
        return "ROLLBACK", "broken", "; ".join(r.detail for r in broken), metrics
    if metrics["elapsed_s"] < rollout.min_stage_s:
        reason = (
            f"too early: {metrics['elapsed_s']:.0f} s of the stage's "
            f"{rollout.min_stage_s:g} s (event time)"
        )
        return "HOLD", "too_early", reason, metrics
    pending = [r for r in results if r.state != "holds"]
    if pending:
        return "HOLD", "undecided", "; ".join(r.detail for r in pending), metrics
    return "PROMOTE", "promoted", "; ".join(r.detail for r in results), metrics


class RolloutJudge:
    """Rollouts by agent, the stage's rollups, and the verdicts they give."""

    def __init__(self, settings: RolloutSettings) -> None:
        self.settings = settings
        self.rollouts: dict[str, Rollout] = {}
        #: per agent: (version, scope_key, window_start_us) -> the latest rollup of that window
        self._windows: dict[str, dict[tuple[str, str, int], Rollup]] = {}
        self._clock: dict[str, int] = {}
        #: per agent: the kind of the last HOLD emitted in the current stage
        self._held: dict[str, str] = {}

    def earliest_stage_start_us(self) -> int | None:
        """Where the rollups must be read from to judge every active rollout."""
        starts = [to_us(r.stage_started_at) for r in self.rollouts.values() if r.status == "ACTIVE"]
        return min(starts) if starts else None

    def set_rollout(self, rollout: Rollout) -> bool:
        """A rollout's definition or state as read from the rollouts topic; True when it
        changed what is judged (a new rollout or stage)."""
        known = self.rollouts.get(rollout.agent_id)
        if known is not None and not supersedes(rollout, known):
            return False  # an older state (or rollout) than the one known: see latest()
        if (
            known is not None
            and known.rollout_id == rollout.rollout_id
            and (known.stage_index, known.status) == (rollout.stage_index, rollout.status)
        ):
            self.rollouts[rollout.agent_id] = rollout
            return False
        self.rollouts[rollout.agent_id] = rollout
        self._held.pop(rollout.agent_id, None)
        if known is None or known.rollout_id != rollout.rollout_id:
            self._windows.pop(rollout.agent_id, None)
            self._clock.pop(rollout.agent_id, None)
        self._prune(rollout)
        return rollout.status == "ACTIVE"

    def _prune(self, rollout: Rollout) -> None:
        start = to_us(rollout.stage_started_at)
        windows = self._windows.get(rollout.agent_id)
        if windows:
            for key in [k for k in windows if k[2] < start]:
                del windows[key]

    def add_rollups(self, rollups: Iterable[Rollup]) -> list[Decision]:
        """Take rollups (a batch, judged in window order); the decisions they lead to."""
        decisions: list[Decision] = []
        resolution = self.settings.resolution
        for r in sorted(rollups, key=lambda r: r.window_end):
            rollout = self.rollouts.get(r.agent_id or "")
            if (
                rollout is None
                or rollout.status != "ACTIVE"
                or r.resolution != resolution
                or r.scope_kind is not ScopeKind.AGENT
                or r.agent_version not in (rollout.baseline, rollout.candidate)
            ):
                continue
            agent = rollout.agent_id
            start_us, end_us = to_us(r.window_start), to_us(r.window_end)
            if start_us < to_us(rollout.stage_started_at):
                continue
            clock = self._clock.get(agent)
            if clock is not None and end_us > clock:
                decision = self._judge(rollout, clock)
                if decision is not None:
                    decisions.append(decision)
                    rollout = self.rollouts[agent]
                    if rollout.status != "ACTIVE" or start_us < to_us(rollout.stage_started_at):
                        continue
            windows = self._windows.setdefault(agent, {})
            key = (r.agent_version or "", r.scope_key, start_us)
            old = windows.get(key)
            if old is None or old.computed_at <= r.computed_at:
                windows[key] = r
            self._clock[agent] = max(self._clock.get(agent, end_us), end_us)
        return decisions

    def _judge(self, rollout: Rollout, clock_us: int) -> Decision | None:
        agent = rollout.agent_id
        windows = [
            (version, r)
            for (version, _, _), r in self._windows.get(agent, {}).items()
            if to_us(r.window_end) <= clock_us
        ]
        cand = [r for v, r in windows if v == rollout.candidate]
        base = [r for v, r in windows if v == rollout.baseline]
        verdict, kind, reason, metrics = judge_stage(
            rollout, cand, base, clock_us, self.settings.confidence
        )
        if verdict == "HOLD" and self._held.get(agent) == kind:
            return None
        decided_at = rollout.stage_started_at + timedelta(
            microseconds=clock_us - to_us(rollout.stage_started_at)
        )
        next_percent: int | None = None
        state: Rollout | None = None
        if verdict == "HOLD":
            self._held[agent] = kind
        elif verdict == "ROLLBACK":
            next_percent = 0
            state = rollout.model_copy(
                update={"status": "ROLLED_BACK", "updated_at": decided_at, "reason": reason}
            )
        else:
            index = rollout.stage_index + 1
            next_percent = rollout.stages[index]
            done = index == len(rollout.stages) - 1
            state = rollout.model_copy(
                update={
                    "stage_index": index,
                    "stage_started_at": decided_at,
                    "status": "COMPLETED" if done else "ACTIVE",
                    "updated_at": decided_at,
                    "reason": reason,
                }
            )
        key = f"{rollout.rollout_id}/{rollout.stage_index}/{verdict}/{kind}"
        record = RolloutVerdict(
            verdict_id=str(uuid.uuid5(VERDICT_NAMESPACE, key)),
            rollout_id=rollout.rollout_id,
            agent_id=agent,
            baseline=rollout.baseline,
            candidate=rollout.candidate,
            verdict=verdict,
            stage_index=rollout.stage_index,
            stage_percent=rollout.percent,
            next_percent=next_percent,
            reason=reason[:4000],
            decided_at=decided_at,
            stage_started_at=rollout.stage_started_at,
            metrics=metrics,
        )
        if state is not None:
            self.set_rollout(state)
        return Decision(record, state)
