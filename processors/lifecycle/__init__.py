"""The run lifecycle: the state machine per ``run_id``, time budgets, timeout timers.

Pure and deterministic; :mod:`processors.engine` is a thin shell around it:

* :func:`apply` — ``(RunState | None, StateTransition, LifecycleSettings) ->``
  :class:`Accepted` | :class:`Rejected` | :class:`Duplicate`;
* :func:`observe_tool_call` — a tool call moves an EXECUTING run's deadline
  (per-tool budget);
* :func:`overdue` / :func:`expired` — the synthesized TIMEOUT failure, the purge
  of finished runs;
* :class:`TimeoutTracker` — one partition's deadline index and event clock;
  :meth:`TimeoutTracker.sweep` is the timer step.

Run states are JSON-able dicts (:class:`RunState`), stored by the engine in
its changelog topic keyed by ``run_id``. Example (the shell, per transition event)::

    out = apply(runs.get(tr.run_id), tr, settings.lifecycle)
    tracker.observe(to_us(tr.event_time), now_us())
    if isinstance(out, Accepted):
        runs[tr.run_id] = out.state; tracker.track(out.state)
        await lifecycle_topic.send(key=tr.run_id, value=encode_model(out.transition))
    elif isinstance(out, Rejected):
        if out.timeout: ...publish out.timeout.transition...
        if out.state is not None: runs[tr.run_id] = out.state; tracker.track(out.state)
        ...dead-letter the record with out.reason...
"""

from agentstream.processors.lifecycle._deadlines import (
    DeadlineIndex,
    Sweep,
    TimeoutTracker,
    TrackerState,
)
from agentstream.processors.lifecycle._machine import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    TIMEOUT_CATEGORY,
    Accepted,
    Duplicate,
    Outcome,
    Rejected,
    RunState,
    apply,
    budget_s,
    expired,
    observe_tool_call,
    overdue,
    timer_due,
    transition_problem,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "TIMEOUT_CATEGORY",
    "Accepted",
    "DeadlineIndex",
    "Duplicate",
    "Outcome",
    "Rejected",
    "RunState",
    "Sweep",
    "TimeoutTracker",
    "TrackerState",
    "apply",
    "budget_s",
    "expired",
    "observe_tool_call",
    "overdue",
    "timer_due",
    "transition_problem",
]
