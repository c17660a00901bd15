"""Alert rules on closed *and corrected* rollup windows: one notification per episode.

Two layers, both pure and deterministic:

* the **timeline** (:mod:`processors.alerts._timeline`): the rule's state machine run in
  event-time order over the latest value of every window (the rollups re-emit a window with
  corrected totals when events arrive after it closed, up to ``rollups.horizon_s``); it says
  which windows are FIRING, whatever order the windows and their corrections arrived in;
* the **notifications**: after each rollup (new or corrected) the timeline is recomputed and
  reconciled with what was already sent:

  - a FIRING is sent for a timeline episode that is not being paged, at its first breaching
    window that ends after the last FIRING's window and at least ``cooldown`` (event time)
    after it. So no FIRING is sent twice for one window, none while the last one is not
    resolved (a correction that moves the start of the paged episode sends nothing), and
    an episode paged, taken back by a correction and then breaching again is paged again
    only from a later window on;
  - a RESOLVED is sent only for the episode being paged, when the timeline no longer fires
    (it cleared, or a correction took the breach back), or before the FIRING of a later
    episode; an episode that began and ended between two rollups (a correction of a past
    window) gets its FIRING and its RESOLVED at once.

  The same rollup twice, a replay after a restart or a duplicate event (the rollups count it
  once) changes no window, so sends nothing. Alerts carry the window they are about,
  ``fired_at`` = that window's end (event time, not the wall clock) and an ``alert_id`` that
  is a UUID5 of rule, scope, state, window and episode.

A window ``rollups.horizon_s`` past the end of the newest window of its rule and scope can
no longer be corrected (the rollups refuse events that late): it is folded into the *base*
(the machine after the final windows) and forgotten. The state of one rule on one scope is
a :class:`RuleState`, stored as the plain JSON-safe dict of :meth:`RuleState.to_dict` in the
engine's changelog, so a restarted worker carries on exactly where it stopped. Version 1
states (no windows kept) are read as a base with no windows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from agentstream.processors.alerts._metrics import format_value
from agentstream.processors.alerts._rules import Rule, RuleSet
from agentstream.processors.alerts._state import STATE_VERSION, RuleState
from agentstream.processors.alerts._timeline import (
    Episode,
    Status,
    Step,
    episodes,
    run,
    sufficient,
    window_of,
)
from agentstream.schemas import Alert, AlertState, Rollup

__all__ = [
    "STATE_VERSION",
    "AlertEvaluator",
    "Evaluation",
    "RuleState",
    "Status",
    "evaluate",
    "expire",
    "sample_alert",
    "state_key",
]

_ALERT_NAMESPACE = uuid.UUID("6f1f3c1e-8a55-5b6e-9d0a-2f7f4f1a9c11")


def state_key(rule_id: str, scope_key: str) -> str:
    """The table key of one rule on one scope."""
    return f"{rule_id}|{scope_key}"


class Evaluation(NamedTuple):
    """The outcome of one evaluation: the new state and the alerts to publish, in order."""

    state: RuleState
    alerts: tuple[Alert, ...]


def _coerce(rule: Rule, state: RuleState | Mapping[str, Any] | None, scope_key: str) -> RuleState:
    if state is None:
        return RuleState(rule.id, scope_key)
    current = state if isinstance(state, RuleState) else RuleState.from_dict(state)
    if current.rule_id != rule.id or current.scope_key != scope_key:
        raise ValueError(
            f"state of {current.rule_id!r} on {current.scope_key!r} "
            f"passed for {rule.id!r} on {scope_key!r}"
        )
    return current


def _alert(
    rule: Rule,
    scope_key: str,
    state: AlertState,
    value: float,
    window: tuple[datetime, datetime],
    fired_at: datetime,
    message: str,
    tag: str,
) -> Alert:
    seed = f"{rule.id}\n{scope_key}\n{state}\n{window[1].isoformat()}\n{tag}"
    return Alert(
        alert_id=str(uuid.uuid5(_ALERT_NAMESPACE, seed)),
        rule_id=rule.id,
        state=state,
        severity=rule.severity,
        scope_key=scope_key,
        metric=rule.metric,
        value=value,
        threshold=rule.threshold,
        comparator=rule.comparator,
        resolution=rule.resolution,
        window_start=window[0],
        window_end=window[1],
        fired_at=fired_at,
        message=message,
        channels=rule.channels,
    )


def _condition(rule: Rule) -> str:
    return f"{rule.comparator} {format_value(rule.metric_info, rule.threshold)}"


def _fmt_time(value: datetime | None) -> str:
    return "?" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def evaluate(
    rule: Rule,
    state: RuleState | Mapping[str, Any] | None,
    rollup: Rollup,
    *,
    horizon_s: float = 0.0,
) -> Evaluation:
    """Take ``rollup`` (a new window or a corrected one) into the state of ``rule`` on its
    scope (None: a fresh state); the alerts it causes.

    ``horizon_s`` (``rollups.horizon_s``): how long past the newest window a window may still
    be corrected (0: never; a re-emitted window is then ignored). A rollup the rule does not
    read (other resolution or scope) leaves the state as is.
    """
    st = _coerce(rule, state, rollup.scope_key)
    if not rule.matches(rollup):
        return Evaluation(st, ())
    final = st.base.last_window_end
    if final is not None and rollup.window_end <= final:
        return Evaluation(st, ())  # past the horizon: it cannot change any more
    new = window_of(rule, rollup)
    if new in st.windows:
        return Evaluation(st, ())  # the same window again (a replay): nothing changes
    kept = [w for w in st.windows if w.end != new.end]
    corrected = len(kept) < len(st.windows)  # a window already seen, re-emitted
    windows = sorted([*kept, new], key=lambda w: w.end)
    steps = run(rule, st.base, windows)
    st = replace(st, windows=tuple(windows), head=steps[-1].machine)
    st, alerts = _reconcile(rule, st, steps, rollup if corrected else None)
    return Evaluation(_fold(st, steps, horizon_s), tuple(alerts))


def _fold(st: RuleState, steps: Sequence[Step], horizon_s: float) -> RuleState:
    """Fold the windows that can no longer be corrected into the base."""
    limit = steps[-1].window.end - timedelta(seconds=horizon_s)
    final = [s for s in steps if s.window.end <= limit]
    if not final:
        return st
    return replace(st, base=final[-1].machine, windows=st.windows[len(final) :])


def _reconcile(
    rule: Rule, st: RuleState, steps: Sequence[Step], corrected: Rollup | None
) -> tuple[RuleState, list[Alert]]:
    """Send what the timeline says and was not sent yet (see the module docstring);
    ``corrected``: the re-emitted window that changed the timeline, if it is one."""
    alerts: list[Alert] = []
    cooldown = timedelta(seconds=rule.cooldown_s)
    for ep in episodes(st.base, steps):
        last = st.fired_at
        if st.paging and last is not None and ep.start <= last:
            continue  # the episode being paged (its start may have moved earlier)
        if st.paging:  # the paged episode ended before this one began
            st, alert = _resolve(rule, st, steps, corrected)
            alerts.append(alert)
        point = next(
            (
                s
                for s in ep.steps
                if s.machine.streak > 0
                and (last is None or (s.window.end > last and s.window.end - last >= cooldown))
            ),
            None,
        )
        if point is None:
            continue  # within the cooldown of the last FIRING sent
        alert = _firing(rule, st.scope_key, ep, point, corrected)
        alerts.append(alert)
        st = replace(
            st,
            paging=True,
            fired_at=alert.fired_at,
            fired_value=alert.value,
            fired_alert_id=alert.alert_id,
        )
        if ep.resolved is not None:
            st, alert = _resolve(rule, st, steps, corrected)
            alerts.append(alert)
    if st.paging and st.head.status != "FIRING":
        st, alert = _resolve(rule, st, steps, corrected)
        alerts.append(alert)
    return st, alerts


def _correction_note(rule: Rule, corrected: Rollup | None) -> str:
    if corrected is None:
        return ""
    ended = _fmt_time(corrected.window_end)
    return f"; after a correction of the {rule.resolution} window ending {ended}"


def _firing(rule: Rule, scope: str, ep: Episode, point: Step, corrected: Rollup | None) -> Alert:
    w, metric = point.window, rule.metric_info
    value = w.value if w.value is not None else 0.0
    message = (
        f"{rule.metric} is {format_value(metric, value)} ({_condition(rule)}) on {scope} for "
        f"{point.machine.streak} consecutive {rule.resolution} window(s); {w.samples} "
        f"{metric.sample_noun} in the last one"
        f"{_correction_note(rule, corrected)}"
    )
    if rule.description:
        message += f". {rule.description}"
    return _alert(rule, scope, AlertState.FIRING, value, (w.start, w.end), w.end, message, "")


def _resolve(
    rule: Rule, st: RuleState, steps: Sequence[Step], corrected: Rollup | None
) -> tuple[RuleState, Alert]:
    """The RESOLVED of the FIRING sent last, at the first window from the FIRING's on where
    the timeline does not fire (or the newest window)."""
    since = st.fired_at
    point = next(
        (
            s
            for s in steps
            if (since is None or s.window.end >= since) and s.machine.status != "FIRING"
        ),
        None,
    )
    w = point.window if point is not None else steps[-1].window
    metric = rule.metric_info
    why = (
        f"back to {'no data' if w.value is None else format_value(metric, w.value)}"
        if sufficient(rule, w)
        else f"not enough data ({w.samples} {metric.sample_noun} < {rule.min_samples})"
    )
    message = (
        f"{rule.metric} {why} on {st.scope_key} (alert condition {_condition(rule)}); "
        f"firing since {_fmt_time(st.fired_at)}{_correction_note(rule, corrected)}"
    )
    alert = _alert(
        rule,
        st.scope_key,
        AlertState.RESOLVED,
        w.value or 0.0,
        (w.start, w.end),
        w.end,
        message,
        f"resolves {st.fired_alert_id}",
    )
    return replace(st, paging=False), alert


def expire(rule: Rule, state: RuleState | Mapping[str, Any], now: datetime) -> Evaluation:
    """Resolve a FIRING alert whose scope sent nothing for ``rule.stale_after`` (if set).

    ``now`` is the current (event or wall-clock) time; call it from a timer.
    """
    st = state if isinstance(state, RuleState) else RuleState.from_dict(state)
    last = st.last_window_end
    if (
        rule.stale_after_s is None
        or not st.paging
        or last is None
        or now - last < timedelta(seconds=rule.stale_after_s)
    ):
        return Evaluation(st, ())
    message = (
        f"{rule.metric} on {st.scope_key}: no {rule.resolution} rollup since "
        f"{_fmt_time(last)}; resolved for lack of data "
        f"(firing since {_fmt_time(st.fired_at)})"
    )
    alert = _alert(
        rule,
        st.scope_key,
        AlertState.RESOLVED,
        st.last_value if st.last_value is not None else 0.0,
        (last, now),
        now,
        message,
        tag=f"stale, resolves {st.fired_alert_id}",
    )
    return Evaluation(replace(st, paging=False), (alert,))


def sample_alert(rule: Rule, *, scope_key: str = "test", now: datetime | None = None) -> Alert:
    """A FIRING alert of ``rule`` marked as a test (fresh id), for ``agentstream alerts test``."""
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = end - timedelta(seconds=rule.window_s)
    message = (
        f"TEST notification of rule {rule.id}: {rule.metric} {_condition(rule)} "
        f"({rule.scope.describe()}, {rule.resolution} windows). No action needed."
    )
    return Alert(
        rule_id=rule.id,
        state=AlertState.FIRING,
        severity=rule.severity,
        scope_key=scope_key,
        metric=rule.metric,
        value=rule.threshold,
        threshold=rule.threshold,
        comparator=rule.comparator,
        resolution=rule.resolution,
        window_start=start,
        window_end=end,
        fired_at=end,
        message=message,
        channels=rule.channels,
    )


class AlertEvaluator:
    """Every rule of a :class:`RuleSet` over a state store (the engine's changelogged dict).

    The store maps :func:`state_key` to :meth:`RuleState.to_dict` values; idle states
    (nothing kept, nothing pending, nothing ever sent) are not stored. Windows are kept for
    correction for ``rules.horizon_s`` (``rollups.horizon_s``).
    """

    def __init__(self, rules: RuleSet, store: MutableMapping[str, Any] | None = None) -> None:
        self.rules = rules
        self.store: MutableMapping[str, Any] = store if store is not None else {}
        #: per key, the dict last written to the store and its state (not parsed again)
        self._parsed: dict[str, tuple[Any, RuleState]] = {}

    def process(self, rollup: Rollup) -> list[Alert]:
        """Evaluate every rule reading ``rollup`` (new or corrected); the alerts to publish,
        in rule order."""
        alerts: list[Alert] = []
        for rule in self.rules.matching(rollup):
            key = state_key(rule.id, rollup.scope_key)
            before = self.store.get(key)
            cached = self._parsed.get(key)
            state = cached[1] if cached is not None and cached[0] is before else before
            result = evaluate(rule, state, rollup, horizon_s=self.rules.horizon_s)
            self._save(key, before, result.state)
            alerts.extend(result.alerts)
        return alerts

    def expire(self, now: datetime) -> list[Alert]:
        """Resolve the stale FIRING alerts (rules with ``stale_after``)."""
        alerts: list[Alert] = []
        for key, raw in list(self.store.items()):
            state = RuleState.from_dict(raw)
            rule = self.rules.get(state.rule_id)
            if rule is None:
                continue
            result = expire(rule, state, now)
            if result.alerts:
                self.store[key] = result.state.to_dict()
                alerts.extend(result.alerts)
        return alerts

    def state(self, rule_id: str, scope_key: str) -> RuleState:
        """The current state of one rule on one scope."""
        raw = self.store.get(state_key(rule_id, scope_key))
        return RuleState(rule_id, scope_key) if raw is None else RuleState.from_dict(raw)

    def states(self) -> Iterator[RuleState]:
        """Every stored state."""
        for raw in list(self.store.values()):
            yield RuleState.from_dict(raw)

    def _save(self, key: str, before: Any, state: RuleState) -> None:
        if state.idle:
            self._parsed.pop(key, None)
            if before is not None:
                del self.store[key]
            return
        cached = self._parsed.get(key)
        if cached is not None and cached[0] is before and cached[1] is state:
            return  # unchanged: not written again (no changelog record)
        data = state.to_dict()
        if data != before:
            self.store[key] = data
        self._parsed[key] = (self.store[key], state)
