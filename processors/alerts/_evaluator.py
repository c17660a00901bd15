"""Rule evaluation on closed rollup windows: OK → PENDING → FIRING → RESOLVED.

:func:`evaluate` is pure: ``(rule, state, rollup) -> (new_state, alert | None)``.
The state of one rule on one scope is a :class:`RuleState`, stored as the plain
JSON-safe dict of :meth:`RuleState.to_dict` (kept in the engine's changelog), so a
worker that restarts picks up exactly where it stopped.

Per window of the rule's resolution:

* the metric's value and sample count come from the rollup; a window with fewer
  than ``min_samples`` samples (or no value, e.g. a ratio of zero calls) is
  *insufficient*: it never breaches;
* a breaching window extends the streak when it directly follows the previous
  window (``window_start`` == previous ``window_end``), else starts a new one;
  at ``for`` consecutive breaching windows the state goes FIRING and one FIRING
  alert is returned, unless the last FIRING of this rule and scope is less than
  ``cooldown`` (event time) ago: then it stays PENDING and fires once the
  cooldown has passed if it still breaches;
* while FIRING, ``resolve_for`` consecutive non-breaching windows (insufficient
  ones included) return one RESOLVED alert;
* a rollup whose window does not end after the last window seen (a replay after
  a restart, or a late re-emission of a window) is ignored: nothing is repeated.

Alerts are deterministic: the same window on the same state gives the same
``alert_id`` (a UUID5 of rule, scope, state and window) and ``fired_at`` (the
window's end: the event time the decision is about, not the wall clock, which
would differ when rollups are recomputed after a restart), so a repeated alert
deduplicates downstream (dispatcher, webhook receivers, the ``alerts`` table).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, get_args

from agentstream.processors.alerts._metrics import format_value
from agentstream.processors.alerts._rules import Rule, RuleSet
from agentstream.schemas import Alert, AlertState, ContractError, Rollup

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

#: version of the :meth:`RuleState.to_dict` layout
STATE_VERSION = 1
Status = Literal["OK", "PENDING", "FIRING", "RESOLVED"]
_STATUSES: tuple[str, ...] = get_args(Status)
_ALERT_NAMESPACE = uuid.UUID("6f1f3c1e-8a55-5b6e-9d0a-2f7f4f1a9c11")


def state_key(rule_id: str, scope_key: str) -> str:
    """The table key of one rule on one scope."""
    return f"{rule_id}|{scope_key}"


def _ts(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one rule stands on one scope."""

    rule_id: str
    scope_key: str
    status: Status = "OK"
    #: consecutive breaching windows so far
    streak: int = 0
    #: consecutive non-breaching windows while FIRING
    clear_streak: int = 0
    #: end of the last window evaluated (replays and gaps are detected with it)
    last_window_end: datetime | None = None
    last_value: float | None = None
    #: window end (event time) of the last FIRING; the cooldown counts from it
    fired_window_end: datetime | None = None
    #: ``fired_at``, value and id of the last FIRING alert
    fired_at: datetime | None = None
    fired_value: float | None = None
    fired_alert_id: str | None = None

    @property
    def idle(self) -> bool:
        """True when nothing is pending and nothing ever fired: no need to store it."""
        return self.status == "OK" and self.streak == 0 and self.fired_window_end is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (timestamps as ISO-8601 text) for the engine's changelog."""
        return {
            "v": STATE_VERSION,
            "rule_id": self.rule_id,
            "scope_key": self.scope_key,
            "status": self.status,
            "streak": self.streak,
            "clear_streak": self.clear_streak,
            "last_window_end": _ts(self.last_window_end),
            "last_value": self.last_value,
            "fired_window_end": _ts(self.fired_window_end),
            "fired_at": _ts(self.fired_at),
            "fired_value": self.fired_value,
            "fired_alert_id": self.fired_alert_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        """The state :meth:`to_dict` wrote; :class:`ContractError` names a bad field."""
        if data.get("v") != STATE_VERSION:
            raise ContractError(f"alert state.v: unsupported version {data.get('v')!r}")
        try:
            status = data["status"]
            if status not in _STATUSES:
                raise ValueError(f"unknown status {status!r}")
            return cls(
                rule_id=_text(data, "rule_id"),
                scope_key=_text(data, "scope_key"),
                status=status,
                streak=_count(data, "streak"),
                clear_streak=_count(data, "clear_streak"),
                last_window_end=_time(data, "last_window_end"),
                last_value=_number(data, "last_value"),
                fired_window_end=_time(data, "fired_window_end"),
                fired_at=_time(data, "fired_at"),
                fired_value=_number(data, "fired_value"),
                fired_alert_id=_optional_text(data, "fired_alert_id"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ContractError(f"alert state: {exc}") from exc


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be text")
    return value


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    return None if data.get(key) is None else _text(data, key)


def _count(data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{key} must be a non-negative integer")
    return value


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{key} must be a number")
    return float(value)


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{key} must be ISO-8601 text")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{key} must carry a timezone")
    return parsed.astimezone(UTC)


class Evaluation(NamedTuple):
    """The outcome of one evaluation: the new state and the alert to publish, if any."""

    state: RuleState
    alert: Alert | None


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
    tag: str = "",
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


def evaluate(rule: Rule, state: RuleState | Mapping[str, Any] | None, rollup: Rollup) -> Evaluation:
    """Advance ``state`` (None: a fresh one) of ``rule`` on ``rollup``'s scope by one window.

    A rollup the rule does not read (other resolution or scope) leaves the state as is.
    """
    st = _coerce(rule, state, rollup.scope_key)
    if not rule.matches(rollup):
        return Evaluation(st, None)
    if st.last_window_end is not None and rollup.window_end <= st.last_window_end:
        return Evaluation(st, None)  # a replay or a re-emitted window: already decided

    metric = rule.metric_info
    value = metric.value(rollup)
    samples = metric.samples(rollup)
    sufficient = value is not None and samples >= rule.min_samples
    breach = value if sufficient and value is not None and rule.breached(value) else None
    follows = st.last_window_end == rollup.window_start
    window = (rollup.window_start, rollup.window_end)
    st = replace(st, last_window_end=rollup.window_end, last_value=value)
    scope = rollup.scope_key
    shown = "no data" if value is None else format_value(metric, value)

    if breach is not None:
        streak = st.streak + 1 if follows and st.streak > 0 else 1
        if st.status == "FIRING":
            return Evaluation(replace(st, streak=streak, clear_streak=0), None)
        cooled = st.fired_window_end is None or (
            rollup.window_end - st.fired_window_end >= timedelta(seconds=rule.cooldown_s)
        )
        if streak < rule.for_windows or not cooled:
            return Evaluation(replace(st, status="PENDING", streak=streak), None)
        message = (
            f"{rule.metric} is {shown} ({_condition(rule)}) on {scope} for {streak} "
            f"consecutive {rule.resolution} window(s); {samples} {metric.sample_noun} "
            f"in the last one"
        )
        if rule.description:
            message += f". {rule.description}"
        alert = _alert(rule, scope, AlertState.FIRING, breach, window, rollup.window_end, message)
        fired = replace(
            st,
            status="FIRING",
            streak=streak,
            clear_streak=0,
            fired_window_end=rollup.window_end,
            fired_at=alert.fired_at,
            fired_value=breach,
            fired_alert_id=alert.alert_id,
        )
        return Evaluation(fired, alert)

    if st.status != "FIRING":
        status: Status = "RESOLVED" if st.status == "RESOLVED" else "OK"
        return Evaluation(replace(st, status=status, streak=0, clear_streak=0), None)
    clear_streak = st.clear_streak + 1 if follows else 1
    if clear_streak < rule.resolve_for:
        return Evaluation(replace(st, streak=0, clear_streak=clear_streak), None)
    why = (
        f"back to {shown}"
        if sufficient
        else f"not enough data ({samples} {metric.sample_noun} < {rule.min_samples})"
    )
    message = (
        f"{rule.metric} {why} on {scope} (alert condition {_condition(rule)}); "
        f"firing since {_fmt_time(st.fired_at)}"
    )
    alert = _alert(
        rule, scope, AlertState.RESOLVED, value or 0.0, window, rollup.window_end, message
    )
    return Evaluation(replace(st, status="RESOLVED", streak=0, clear_streak=0), alert)


def expire(rule: Rule, state: RuleState | Mapping[str, Any], now: datetime) -> Evaluation:
    """Resolve a FIRING alert whose scope sent nothing for ``rule.stale_after`` (if set).

    ``now`` is the current (event or wall-clock) time; call it from a timer.
    """
    st = state if isinstance(state, RuleState) else RuleState.from_dict(state)
    if (
        rule.stale_after_s is None
        or st.status != "FIRING"
        or st.last_window_end is None
        or now - st.last_window_end < timedelta(seconds=rule.stale_after_s)
    ):
        return Evaluation(st, None)
    message = (
        f"{rule.metric} on {st.scope_key}: no {rule.resolution} rollup since "
        f"{_fmt_time(st.last_window_end)}; resolved for lack of data "
        f"(firing since {_fmt_time(st.fired_at)})"
    )
    alert = _alert(
        rule,
        st.scope_key,
        AlertState.RESOLVED,
        st.last_value if st.last_value is not None else 0.0,
        (st.last_window_end, now),
        now,
        message,
        tag="stale",
    )
    return Evaluation(replace(st, status="RESOLVED", streak=0, clear_streak=0), alert)


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

    The store maps :func:`state_key` to :meth:`RuleState.to_dict` values; idle
    states (nothing pending, never fired) are not stored, so steady traffic
    causes no writes.
    """

    def __init__(self, rules: RuleSet, store: MutableMapping[str, Any] | None = None) -> None:
        self.rules = rules
        self.store: MutableMapping[str, Any] = store if store is not None else {}

    def process(self, rollup: Rollup) -> list[Alert]:
        """Evaluate every rule reading ``rollup``; the alerts to publish, in rule order."""
        alerts: list[Alert] = []
        for rule in self.rules.matching(rollup):
            key = state_key(rule.id, rollup.scope_key)
            before = self.store.get(key)
            result = evaluate(rule, before, rollup)
            self._save(key, before, result.state)
            if result.alert is not None:
                alerts.append(result.alert)
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
            if result.alert is not None:
                self.store[key] = result.state.to_dict()
                alerts.append(result.alert)
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
            if before is not None:
                del self.store[key]
            return
        self.store[key] = state.to_dict()
