"""The soak's options, result and the worker settings it runs with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentstream.core.config import LocalKafkaSettings
from agentstream.devtools.soak.compare import Row
from agentstream.devtools.soak.population import FAULTS

__all__ = [
    "INPUTS",
    "LIFECYCLE",
    "OUTPUTS",
    "ROLLUPS",
    "SINK_INPUTS",
    "SoakOptions",
    "SoakResult",
]

#: the worker's settings in the soak: short budgets so stalled runs time out within it
LIFECYCLE: dict[str, Any] = {
    "init_budget_s": 10,
    "preparing_budget_s": 10,
    "executing_budget_s": 20,
    "reviewing_budget_s": 20,
    "timeout_grace_s": 2,
    "idle_after_s": 2,
}
ROLLUPS: dict[str, Any] = {"allowed_lateness_s": 3, "idle_after_s": 2}
INPUTS: tuple[str, ...] = ("tool_calls", "model_calls", "transitions", "reviews")
OUTPUTS: tuple[str, ...] = ("lifecycle", "invalid", "rollups", "alerts")
SINK_INPUTS: tuple[str, ...] = ("tool_calls", "model_calls", "reviews")


@dataclass(frozen=True)
class SoakOptions:
    """What to run."""

    duration_s: float = 120.0
    seed: int = 7
    faults: frozenset[str] = frozenset(FAULTS)
    workers: int = 1
    #: an existing broker; None: one started in ``home`` (needed for the broker fault)
    bootstrap: str | None = None
    #: where everything goes; None: a fresh temporary folder (removed unless ``keep``)
    home: Path | None = None
    keep: bool = False
    runs_per_s: float = 3.0
    late_by_s: float = 180.0
    #: nothing stored for this long (and no lag) counts as drained
    quiet_s: float = 10.0
    drain_timeout_s: float = 900.0
    #: where the broker's jars are cached (a soak-started broker)
    local_kafka: LocalKafkaSettings | None = None


@dataclass
class SoakResult:
    """The table's rows and what happened."""

    rows: list[Row]
    elapsed_s: float
    sent: int
    home: Path
    log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)
