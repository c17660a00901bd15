"""Stream processors: contract gate, lifecycle state machine, rollups, alert rules.

The cores are pure, deterministic and keep JSON-able state, so the engine
(:mod:`processors.engine`, a transactional consume → process → produce loop with a
changelog topic for its state) is a thin shell around them:

* :mod:`processors.lifecycle` — the run state machine per ``run_id``, time budgets,
  synthesized TIMEOUT failures, the per-partition :class:`TimeoutTracker`;
* :mod:`processors.rollups` — 1 s / 1 min / 1 h tumbling event-time rollups per
  scope with a mergeable latency sketch;
* :mod:`processors.alerts` — alert rules evaluated on closed rollups;
* :class:`EventClock` — event time, with the wall clock taking over while the
  input is idle (how timers and watermarks progress on a quiet stream).

Instants in processor state are integer microseconds since the epoch
(:func:`to_us` / :func:`from_us`).
"""

from agentstream.processors._clock import (
    EventClock,
    EventClockState,
    from_us,
    now_us,
    seconds_to_us,
    to_us,
)
from agentstream.processors.lifecycle import (
    ALLOWED_TRANSITIONS,
    TERMINAL_STATES,
    Accepted,
    DeadlineIndex,
    Duplicate,
    Outcome,
    Rejected,
    RunState,
    Sweep,
    TimeoutTracker,
    apply,
    observe_tool_call,
    overdue,
)
from agentstream.processors.rollups import (
    LatencySketch,
    RollupAggregator,
    RollupEvent,
    Scope,
    merge_rollups,
    scopes_of,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "TERMINAL_STATES",
    "Accepted",
    "DeadlineIndex",
    "Duplicate",
    "EventClock",
    "EventClockState",
    "LatencySketch",
    "Outcome",
    "Rejected",
    "RollupAggregator",
    "RollupEvent",
    "RunState",
    "Scope",
    "Sweep",
    "TimeoutTracker",
    "apply",
    "from_us",
    "merge_rollups",
    "now_us",
    "observe_tool_call",
    "overdue",
    "scopes_of",
    "seconds_to_us",
    "to_us",
]
