"""Which table holds which contract model, and how a record becomes a row.

Rows are derived from the models themselves: a table's insert columns are its
model's fields, in model order, so a field added to the contract is a column
the migrations must add (a test checks every table covers its model), never
a value silently dropped here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType
from typing import Any, get_args

from agentstream.core.catalog import STREAMS
from agentstream.core.errors import StorageError
from agentstream.schemas import (
    Alert,
    InvalidEvent,
    Record,
    Resolution,
    ReviewRequest,
    RolloutVerdict,
    Rollup,
)

__all__ = ["REDACTED_FIELDS", "SINK_REDACTIONS", "TABLES", "TableSpec", "table_for"]

#: free-text fields redacted again before they are stored (the catalog's, of every stream)
REDACTED_FIELDS = frozenset(field for s in STREAMS for field in s.free_text)
#: the column of what the sink's own pass replaced (kind -> count), in tables with free text
SINK_REDACTIONS = "sink_redactions"


@dataclass(frozen=True)
class TableSpec:
    """A table of the audit trail and the model its rows come from."""

    name: str
    model: type[Record]
    #: the column of the event's own time (TTL, partitions, ``--since``)
    time_column: str

    @property
    def fields(self) -> tuple[str, ...]:
        """The model's fields, in model order: the values of a row (:meth:`row_builder`)."""
        return tuple(self.model.model_fields)

    @property
    def columns(self) -> tuple[str, ...]:
        """The insert columns: the model's fields, in model order, then ``sink_redactions``
        when the model has free text (what the sink's own redaction pass replaced; a row
        inserted without it stores an empty map)."""
        fields = self.fields
        if any(f in REDACTED_FIELDS for f in fields):
            return (*fields, SINK_REDACTIONS)
        return fields

    @property
    def view(self) -> str:
        """The deduplicated view analysts read."""
        return f"{self.name}_dedup"

    @property
    def redacted_at(self) -> tuple[tuple[int, bool], ...]:
        """The free-text columns redacted again before they are stored: (index, JSON text?)."""
        fields = enumerate(self.model.model_fields)
        return tuple((i, c == "params") for i, c in fields if c in REDACTED_FIELDS)

    def row_builder(self) -> Callable[[Record], tuple[Any, ...]]:
        """A function record -> row values (the model's fields, in model order)."""
        getter = self.fields_getter()

        def values(record: Record) -> tuple[Any, ...]:
            return tuple(getter(record.__dict__))

        return values

    def fields_getter(self) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
        """A function a record's ``__dict__`` -> its row values (see :meth:`row_builder`).

        A model's fields live in its ``__dict__``: one C call reads them all, faster
        than attribute lookups through the model's class.
        """
        return itemgetter(*self.fields)


#: the column of each model's own time (TTL, partitions, ``--since``)
_TIME_COLUMN: dict[type[Record], str] = {
    InvalidEvent: "detected_time",
    Alert: "fired_at",
    Rollup: "window_start",
    ReviewRequest: "requested_at",
    RolloutVerdict: "decided_at",
}


def _tables() -> dict[str, TableSpec]:
    tables: dict[str, TableSpec] = {}
    for s in STREAMS:
        if s.table is None:
            continue
        time_column = _TIME_COLUMN.get(s.model, "event_time")
        names = [f"{s.table}_{r}" for r in get_args(Resolution)] if s.model is Rollup else [s.table]
        for name in names:
            tables[name] = TableSpec(name, s.model, time_column)
    return tables


#: every table of the audit trail, from the stream catalog
TABLES: Mapping[str, TableSpec] = MappingProxyType(_tables())

_TABLE_OF_MODEL: dict[type[Record], str] = {
    s.model: s.table for s in STREAMS if s.table is not None and s.model is not Rollup
}


def table_for(record: Record) -> str:
    """The table ``record`` belongs in (rollups: by resolution)."""
    if isinstance(record, Rollup):
        return f"rollups_{record.resolution}"
    table = _TABLE_OF_MODEL.get(type(record))
    if table is None:
        raise StorageError(f"no table holds {type(record).__name__} records")
    return table
