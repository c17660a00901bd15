"""The engine's counters, and per-batch counts of records in, out and dead-lettered,
published once a batch commits."""

from __future__ import annotations

from dataclasses import dataclass

from agentstream.core.metrics import PipelineMetrics

__all__ = ["EngineStats", "Tallies"]


class Tallies:
    """Per topic: this batch's records in and out, and dead letters by (source, error)."""

    __slots__ = ("invalid", "read", "written")

    def __init__(self) -> None:
        self.read: dict[str, int] = {}
        self.written: dict[str, int] = {}
        self.invalid: dict[tuple[str, str], int] = {}

    def count_in(self, topic: str) -> None:
        self.read[topic] = self.read.get(topic, 0) + 1

    def count_out(self, topic: str, n: int = 1) -> None:
        self.written[topic] = self.written.get(topic, 0) + n

    def count_invalid(self, topic: str, error_type: str) -> None:
        self.invalid[(topic, error_type)] = self.invalid.get((topic, error_type), 0) + 1

    def publish(self, metrics: PipelineMetrics) -> None:
        """Count what the committed transaction read and wrote (once per topic, not record)."""
        metrics.add_counts(metrics.consumed, "processors", self.read)
        metrics.add_counts(metrics.produced, "processors", self.written)
        for (topic, error_type), count in self.invalid.items():
            metrics.invalid.add(
                count, {"stage": "processors", "topic": topic, "error_type": error_type}
            )
        self.clear()

    def clear(self) -> None:
        self.read.clear()
        self.written.clear()
        self.invalid.clear()


@dataclass
class EngineStats:
    """Counters, for logs, tests and the bench."""

    consumed: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    invalid: int = 0
    timeouts: int = 0
    rollups: int = 0
    alerts: int = 0
    batches: int = 0
    #: events dead-lettered as too late for their rollup window
    too_late: int = 0
    #: events dead-lettered for an event time out of range (clock sanity)
    out_of_range: int = 0
    #: events the rollups already counted (same event id)
    rollup_duplicates: int = 0
    #: records read from the partials topic (the merge stage's input)
    partials: int = 0
    #: partials that came after their window was forgotten by the merge stage
    partials_refused: int = 0
    #: records delivered again below a position already processed (skipped: their effect is
    #: in the state already)
    redelivered: int = 0
