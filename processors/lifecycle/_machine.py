"""The lifecycle state machine of one run: pure functions over JSON-able run states.

    INIT → PREPARING → EXECUTING → REVIEWING → COMPLETED
               └──────────┴───────────┴────→ FAILED

A run's first event must be ``None → INIT``; every later event must name the
run's current state as ``from_state``. COMPLETED and FAILED are terminal.

Time budgets (event time, :class:`~agentstream.core.config.LifecycleSettings`): INIT,
PREPARING and REVIEWING have one budget each, counted from the moment the run
entered the state. EXECUTING is budgeted per tool: the run has
``executing_budget_s`` from entering EXECUTING, and after each of its tool calls
(:func:`observe_tool_call`) the budget of that tool
(``executing_budget_by_tool_s[tool]``, else the default) counted from the call's
event time. A run whose clock passes ``deadline + timeout_grace_s`` is failed by a
synthesized ``→ FAILED`` transition (``error_category`` TIMEOUT, ``synthesized``,
``event_time`` = the deadline, a deterministic ``event_id``), either

* by the timer (:func:`overdue`, driven by :class:`~processors.lifecycle.TimeoutTracker`), or
* by the run's own next event arriving past the deadline (:func:`apply` then
  fails the run first and refuses the late event as a move of a terminal run),

so the outcome does not depend on when the timer happened to run.

Everything here is deterministic: same state + same input → same output,
including the ids of synthesized events, so a replay after a crash republishes
identical records that the idempotent sink drops.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final, NotRequired, TypeAlias, TypedDict

from agentstream.core.config import LifecycleSettings
from agentstream.processors._clock import from_us, seconds_to_us, to_us
from agentstream.schemas import AgentState, Retention, StateTransition

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "TIMEOUT_CATEGORY",
    "Accepted",
    "Duplicate",
    "Outcome",
    "Rejected",
    "RunState",
    "apply",
    "budget_s",
    "expired",
    "observe_tool_call",
    "overdue",
    "timer_due",
    "transition_problem",
]

_S = AgentState

#: every allowed ``from_state → to_state`` (the first event, ``None → INIT``, aside)
ALLOWED_TRANSITIONS: Final[frozenset[tuple[AgentState, AgentState]]] = frozenset(
    {
        (_S.INIT, _S.PREPARING),
        (_S.PREPARING, _S.EXECUTING),
        (_S.EXECUTING, _S.REVIEWING),
        (_S.REVIEWING, _S.COMPLETED),
        (_S.PREPARING, _S.FAILED),
        (_S.EXECUTING, _S.FAILED),
        (_S.REVIEWING, _S.FAILED),
    }
)
TERMINAL_STATES: Final[frozenset[AgentState]] = frozenset({_S.COMPLETED, _S.FAILED})
_PATH: Final[tuple[AgentState, ...]] = (
    _S.INIT,
    _S.PREPARING,
    _S.EXECUTING,
    _S.REVIEWING,
    _S.COMPLETED,
)
_FAILABLE = "PREPARING, EXECUTING or REVIEWING"
#: namespace of the deterministic ids of synthesized transitions
_TIMEOUT_NAMESPACE: Final = uuid.UUID("6f1f4a36-0d7e-4f55-9a57-2f3c1c0b7e21")
TIMEOUT_CATEGORY: Final = "TIMEOUT"


class RunState(TypedDict):
    """One run's lifecycle state, JSON-able (the engine's state, keyed by ``run_id``).

    Instants are integer microseconds of event time. ``deadline`` is the timeout
    deadline of a live run, or the time a finished run may be forgotten
    (``terminal_retention_s`` after it ended). The context fields come from the
    run's INIT event and fill in the transitions the processor synthesizes.
    """

    run_id: str
    state: str
    entered_at: int
    active_at: int
    tool: str | None
    deadline: int
    recent_ids: list[str]
    tenant_id: str
    user_id: str
    agent_id: str
    agent_version: str
    trace_id: str | None
    retention: str
    #: the input partition index of the run (set by the engine; absent in old state)
    p: NotRequired[int]
    #: the partition's event clock when the run's last event was read (set by the engine):
    #: a run read behind its partition is timed out by the partition's clock only once it
    #: has moved a full budget past this point (:func:`timer_due`)
    read_at: NotRequired[int]


def timer_due(run: RunState) -> int:
    """When the partition clock (not the run's own events) may time the run out.

    ``deadline`` shifted by how far behind its partition the run was last read: a run whose
    events arrive late (a producer that spooled through an outage) keeps its full budget
    measured on the partition's clock from the point where it was read.
    """
    read_at = run.get("read_at")
    if read_at is None:
        return run["deadline"]
    return run["deadline"] + max(0, read_at - run["active_at"])


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid (or synthesized) transition: store ``state``, publish ``transition``.

    ``transition`` is the input with ``dwell_ms`` (time spent in the state it
    leaves; None for INIT) filled in, or the synthesized TIMEOUT failure.
    """

    state: RunState
    transition: StateTransition
    dwell_ms: int | None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An invalid transition: dead-letter it with ``reason``; the lifecycle state is unchanged.

    ``state`` is what to store (the same lifecycle state, the event id
    remembered so a redelivery is a :class:`Duplicate`), None when the run has no
    state and none is created. ``timeout`` is set when the event arrived past the
    run's deadline: the run was failed first, publish ``timeout.transition``.
    """

    reason: str
    state: RunState | None
    timeout: Accepted | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The run already saw this ``event_id``: ignore the event."""

    event_id: str


Outcome: TypeAlias = Accepted | Rejected | Duplicate


def budget_s(state: AgentState, tool: str | None, settings: LifecycleSettings) -> float | None:
    """The time budget of ``state`` in seconds (EXECUTING: of ``tool``); None if terminal."""
    if state is _S.INIT:
        return settings.init_budget_s
    if state is _S.PREPARING:
        return settings.preparing_budget_s
    if state is _S.EXECUTING:
        if tool is not None:
            return settings.executing_budget_by_tool_s.get(tool, settings.executing_budget_s)
        return settings.executing_budget_s
    if state is _S.REVIEWING:
        return settings.reviewing_budget_s
    return None


def _deadline(state: AgentState, since: int, tool: str | None, settings: LifecycleSettings) -> int:
    budget = budget_s(state, tool, settings)
    if budget is None:
        return since + seconds_to_us(settings.terminal_retention_s)
    return since + seconds_to_us(budget)


def _remember(recent: list[str], event_id: str, limit: int) -> list[str]:
    kept = recent[-(limit - 1) :] if limit > 1 else []
    return [*kept, event_id]


def transition_problem(current: AgentState, source: AgentState | None, target: AgentState) -> str:
    """Why ``source → target`` is refused for a run in ``current`` ("" if allowed).

    The messages name what is wrong in the words of the lifecycle, e.g.
    ``EXECUTING→COMPLETED skips REVIEWING``.
    """
    if current in TERMINAL_STATES:
        return f"run is {current} (terminal); {target} not allowed"
    if target is _S.INIT:
        return f"run already started (state {current}); INIT not allowed"
    if source is None:
        return f"from_state is missing; the run's state is {current}"
    if source is not current:
        return f"from_state {source} does not match the run's state {current}"
    if (source, target) in ALLOWED_TRANSITIONS:
        return ""
    arrow = f"{source}→{target}"
    if target is source:
        return f"{arrow} is not a move (the run is already {source})"
    if target is _S.FAILED:
        return f"{arrow} not allowed: a run fails only from {_FAILABLE}"
    here, there = _PATH.index(source), _PATH.index(target)
    if there < here:
        return f"{arrow} goes backwards"
    return f"{arrow} skips {', '.join(_PATH[here + 1 : there])}"


def _first_event_problem(run_id: str, tr: StateTransition) -> str:
    if tr.to_state is _S.INIT:
        return f"run {run_id}'s INIT must have no from_state (got {tr.from_state})"
    return f"run {run_id} has no INIT: first event is {tr.to_state}"


def _start(tr: StateTransition, t: int, settings: LifecycleSettings) -> Accepted:
    state: RunState = {
        "run_id": tr.run_id,
        "state": _S.INIT.value,
        "entered_at": t,
        "active_at": t,
        "tool": None,
        "deadline": _deadline(_S.INIT, t, None, settings),
        "recent_ids": [tr.event_id],
        "tenant_id": tr.tenant_id,
        "user_id": tr.user_id,
        "agent_id": tr.agent_id,
        "agent_version": tr.agent_version,
        "trace_id": tr.trace_id,
        "retention": tr.retention.value,
    }
    out = tr if tr.dwell_ms is None else tr.model_copy(update={"dwell_ms": None})
    return Accepted(state, out, None)


def _timeout_reason(run: RunState, settings: LifecycleSettings) -> str:
    current = AgentState(run["state"])
    budget = budget_s(current, run["tool"], settings)
    text = f"{budget:g}" if budget is not None else "?"
    tool = f" (after tool {run['tool']})" if current is _S.EXECUTING and run["tool"] else ""
    return f"{current} exceeded its {text} s budget{tool}"


def _fail_by_timeout(run: RunState, settings: LifecycleSettings) -> Accepted:
    current = run["state"]
    deadline = run["deadline"]
    dwell = max(0, deadline - run["entered_at"]) // 1000
    name = f"{run['run_id']}/{current}/{run['entered_at']}/{deadline}/timeout"
    event_id = str(uuid.uuid5(_TIMEOUT_NAMESPACE, name))
    transition = StateTransition(
        event_id=event_id,
        event_time=from_us(deadline),
        tenant_id=run["tenant_id"],
        user_id=run["user_id"],
        agent_id=run["agent_id"],
        agent_version=run["agent_version"],
        run_id=run["run_id"],
        trace_id=run["trace_id"],
        from_state=AgentState(current),
        to_state=_S.FAILED,
        reason=_timeout_reason(run, settings),
        error_category=TIMEOUT_CATEGORY,
        dwell_ms=dwell,
        synthesized=True,
        retention=Retention(run["retention"]),
    )
    new: RunState = {
        **run,
        "state": _S.FAILED.value,
        "entered_at": deadline,
        "active_at": deadline,
        "tool": None,
        "deadline": _deadline(_S.FAILED, deadline, None, settings),
        "recent_ids": _remember(run["recent_ids"], event_id, settings.dedup_ids_per_run),
    }
    return Accepted(new, transition, dwell)


def _past_deadline(run: RunState, now: int, settings: LifecycleSettings) -> bool:
    return now > run["deadline"] + seconds_to_us(settings.timeout_grace_s)


def apply(
    run: RunState | None,
    tr: StateTransition,
    settings: LifecycleSettings,
    event_us: int | None = None,
) -> Outcome:
    """Apply one transition event to a run's state (None: the run has no state yet).

    Returns :class:`Accepted` (store and publish), :class:`Rejected` (dead-letter,
    with the reason) or :class:`Duplicate` (ignore). The input state is never
    mutated. An event whose time is before the time the run entered its state
    (producer clock jitter) is accepted with a dwell of 0; the run's clock never
    goes backwards. ``event_us``: ``tr``'s event time in µs when the caller has it.
    """
    t = to_us(tr.event_time) if event_us is None else event_us
    if run is None:
        if tr.to_state is _S.INIT and tr.from_state is None:
            return _start(tr, t, settings)
        return Rejected(_first_event_problem(tr.run_id, tr), None)
    if tr.event_id in run["recent_ids"]:
        return Duplicate(tr.event_id)

    timeout: Accepted | None = None
    current = AgentState(run["state"])
    if current not in TERMINAL_STATES and _past_deadline(run, t, settings):
        timeout = _fail_by_timeout(run, settings)
        run, current = timeout.state, _S.FAILED

    problem = transition_problem(current, tr.from_state, tr.to_state)
    if problem:
        if timeout is not None:
            problem = f"run timed out first ({timeout.transition.reason}); {problem}"
        remembered: RunState = {
            **run,
            "recent_ids": _remember(run["recent_ids"], tr.event_id, settings.dedup_ids_per_run),
        }
        return Rejected(problem, remembered, timeout)

    target = tr.to_state
    entered = max(t, run["entered_at"])
    dwell = (entered - run["entered_at"]) // 1000
    new: RunState = {
        **run,
        "state": target.value,
        "entered_at": entered,
        "active_at": entered,
        "tool": None,
        "deadline": _deadline(target, entered, None, settings),
        "recent_ids": _remember(run["recent_ids"], tr.event_id, settings.dedup_ids_per_run),
    }
    return Accepted(new, tr.model_copy(update={"dwell_ms": dwell}), dwell)


def observe_tool_call(
    run: RunState | None, tool: str, event_us: int, settings: LifecycleSettings
) -> RunState | None:
    """A tool call of the run was seen: while EXECUTING it moves the deadline (per-tool budget).

    The deadline becomes ``latest tool-call time + budget(tool)``. Returns the
    same object when nothing changed (the shell then skips the table write);
    idempotent, so a redelivered call changes nothing. ``event_us`` is the call's
    event time in microseconds.
    """
    if run is None or run["state"] != _S.EXECUTING.value:
        return run
    if event_us < run["active_at"] or (event_us == run["active_at"] and tool == run["tool"]):
        return run
    deadline = _deadline(_S.EXECUTING, event_us, tool, settings)
    return {**run, "active_at": event_us, "tool": tool, "deadline": deadline}


def overdue(run: RunState, now_us: int, settings: LifecycleSettings) -> Accepted | None:
    """The synthesized TIMEOUT failure if the live run is past its deadline at ``now_us``.

    ``now_us`` comes from the event clock (see :mod:`processors._clock`); the run
    is overdue when ``now_us > deadline + timeout_grace_s``. The failure is dated
    at the deadline, with ``dwell_ms`` up to the deadline.
    """
    if AgentState(run["state"]) in TERMINAL_STATES or not _past_deadline(run, now_us, settings):
        return None
    return _fail_by_timeout(run, settings)


def expired(run: RunState, now_us: int) -> bool:
    """True when a finished run is past its retention and may be deleted from the table."""
    return AgentState(run["state"]) in TERMINAL_STATES and now_us > run["deadline"]
