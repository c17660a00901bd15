"""Which table holds which contract model, and how a record becomes a row.

Rows are derived from the models themselves: a table's insert columns are its
model's fields, in model order, so a field added to the contract is a column
the migrations must add (a test checks every table covers its model), never
a value silently dropped here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from agentstream.core.errors import StorageError
from agentstream.core.redact import Redactor
from agentstream.schemas import (
    Alert,
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
)

__all__ = ["REDACTED_FIELDS", "TABLES", "TableSpec", "table_for"]

#: free-text fields redacted again before they are stored
REDACTED_FIELDS = frozenset({"params", "result_summary", "reason", "comment", "message"})


@dataclass(frozen=True)
class TableSpec:
    """A table of the audit trail and the model its rows come from."""

    name: str
    model: type[Record]
    #: the column of the event's own time (TTL, partitions, ``--since``)
    time_column: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The insert columns: the model's fields, in model order."""
        return tuple(self.model.model_fields)

    @property
    def view(self) -> str:
        """The deduplicated view analysts read."""
        return f"{self.name}_dedup"

    def row_builder(self, redactor: Redactor | None = None) -> Callable[[Record], tuple[Any, ...]]:
        """A function record → row values (free text redacted when ``redactor`` is given)."""
        columns = self.columns
        getter = attrgetter(*columns)
        redact_at = [i for i, c in enumerate(columns) if c in REDACTED_FIELDS]
        if redactor is None or not redact_at:

            def plain(record: Record) -> tuple[Any, ...]:
                return tuple(getter(record))

            return plain
        text = redactor.text

        def redacted(record: Record) -> tuple[Any, ...]:
            values = list(getter(record))
            for i in redact_at:
                value = values[i]
                if isinstance(value, str):
                    values[i] = text(value)
            return tuple(values)

        return redacted


TABLES: Mapping[str, TableSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            TableSpec("tool_calls", ToolCall, "event_time"),
            TableSpec("model_calls", ModelCall, "event_time"),
            TableSpec("state_transitions", StateTransition, "event_time"),
            TableSpec("review_decisions", ReviewDecision, "event_time"),
            TableSpec("invalid_events", InvalidEvent, "detected_time"),
            TableSpec("alerts", Alert, "fired_at"),
            TableSpec("rollups_1s", Rollup, "window_start"),
            TableSpec("rollups_1m", Rollup, "window_start"),
            TableSpec("rollups_1h", Rollup, "window_start"),
        )
    }
)

_TABLE_OF_MODEL: dict[type[Record], str] = {
    ToolCall: "tool_calls",
    ModelCall: "model_calls",
    StateTransition: "state_transitions",
    ReviewDecision: "review_decisions",
    InvalidEvent: "invalid_events",
    Alert: "alerts",
}


def table_for(record: Record) -> str:
    """The table ``record`` belongs in (rollups: by resolution)."""
    if isinstance(record, Rollup):
        return f"rollups_{record.resolution}"
    table = _TABLE_OF_MODEL.get(type(record))
    if table is None:
        raise StorageError(f"no table holds {type(record).__name__} records")
    return table
