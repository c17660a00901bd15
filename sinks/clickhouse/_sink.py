"""The ClickHouse sink: contract records → batched, deduplicated inserts.

Each table gets its own batches; a batch is inserted with an
``insert_deduplication_token`` derived from its Kafka positions, so retrying
a batch (or replaying it after a crash, when it is cut the same way) is a
no-op at insert time, and the ReplacingMergeTree key catches whatever a
different cut lets through.

When ClickHouse refuses a batch because of its *data* (a value it cannot
store, a violated constraint), the batch is split in halves until the
refused rows are isolated; they come back as :class:`~sinks.Rejected` with
ClickHouse's message, the rest is stored. A batch whose rows span more
partitions (months) than one INSERT block may hold (code 252, "Too many
partitions for single INSERT block") is split by partition, in halves of its
partitions, until each piece is accepted. Any other failure (server down,
timeout, and the transient forms of code 252: too many parts, merges behind)
is a :class:`~agentstream.core.errors.StorageError` the batching layer retries
with backoff; those rows are never dead-lettered.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final, NamedTuple

from agentstream.core.config import SinkSettings
from agentstream.core.errors import StorageError
from agentstream.core.redact import Counts, Redactor
from agentstream.schemas import Record, Rollup
from agentstream.sinks._base import Batch, BatchingSink, Position, Rejected
from agentstream.sinks.clickhouse._backend import ClickHouseBackend
from agentstream.sinks.clickhouse._tables import SINK_REDACTIONS, TABLES, TableSpec, table_for

__all__ = ["ClickHouseSink", "Row", "is_rejection", "spans_too_many_partitions"]

#: ClickHouse error codes that mean "this data cannot be stored", not "try again later"
_DATA_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        33,  # CANNOT_READ_ALL_DATA
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        349,  # CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
        376,  # CANNOT_PARSE_UUID
        407,  # DECIMAL_OVERFLOW
        469,  # VIOLATED_CONSTRAINT
        563,  # CANNOT_PARSE_... (Map / composite text)
    }
)
_CODE = re.compile(r"Code:\s*(\d+)")
#: code 252 (TOO_MANY_PARTS) in its permanent form: the batch itself spans too many partitions
_TOO_MANY_PARTITIONS = re.compile(r"too many partitions for single insert block", re.IGNORECASE)


def is_rejection(exc: BaseException) -> bool:
    """True when ``exc`` says ClickHouse refuses the data itself (retrying cannot help)."""
    if isinstance(exc, TypeError | ValueError) and not isinstance(exc, StorageError):
        return True  # the value cannot even be encoded for the insert
    match = _CODE.search(str(exc))
    return match is not None and int(match.group(1)) in _DATA_ERROR_CODES


def spans_too_many_partitions(exc: BaseException) -> bool:
    """True when ClickHouse refuses a batch for the partitions it spans (split it by partition).

    Code 252 also means "too many parts" (merges behind): that one is transient and
    retried like any other server trouble.
    """
    match = _CODE.search(str(exc))
    return (
        match is not None
        and int(match.group(1)) == 252
        and _TOO_MANY_PARTITIONS.search(str(exc)) is not None
    )


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:1000] or type(exc).__name__


#: the fields of a :class:`Row` after ``key``, read from the record's values when it has them
_ROW_IDS: Final = ("event_id", "run_id", "tenant_id")


class Row(NamedTuple):
    """One row to insert, with what a dead letter needs if ClickHouse refuses it.

    A named tuple: one is built per record on the sink's hot path. ``values`` are the
    model's fields (:attr:`TableSpec.fields`); ``sink_redactions`` what the sink's own
    redaction pass replaced in them (``None``: nothing).
    """

    values: tuple[Any, ...]
    raw: bytes | None = None
    key: bytes | None = None
    event_id: str | None = None
    run_id: str | None = None
    tenant_id: str | None = None
    sink_redactions: Counts | None = None


#: record, raw bytes, key -> the record's :class:`Row`
RowMaker = Callable[[Record, bytes | None, bytes | None], Row]

_VALUES: Final = itemgetter(0)  # Row -> its values
_COUNTS: Final = itemgetter(Row._fields.index("sink_redactions"))  # Row -> its counts
_new_row: Final = tuple.__new__  # a Row without NamedTuple's Python-level __new__


def _row_maker(spec: TableSpec) -> RowMaker:
    """The function that makes the rows of ``spec``'s table (one call per record: lean).

    The ids a dead letter carries are read from the row's own values.
    """
    build = spec.row_builder()
    fields = list(spec.fields)
    at = [fields.index(name) if name in fields else None for name in _ROW_IDS]
    present = [i for i in at if i is not None]
    if len(present) == len(_ROW_IDS):
        pick = itemgetter(*present)
        getter = spec.fields_getter()  # row_builder's, inlined: one call less per record

        def make(record: Record, raw: bytes | None, key: bytes | None) -> Row:
            values = getter(record.__dict__)
            return _new_row(Row, (values, raw, key, *pick(values), None))

        return make

    def make_some(record: Record, raw: bytes | None, key: bytes | None) -> Row:
        values = build(record)
        ids = tuple(None if i is None else values[i] for i in at)
        return _new_row(Row, (values, raw, key, *ids, None))

    return make_some


class ClickHouseSink(BatchingSink[Row]):
    """Batches rows per table and inserts them through a :class:`ClickHouseBackend`."""

    def __init__(
        self,
        backend: ClickHouseBackend,
        settings: SinkSettings,
        *,
        tables: Mapping[str, TableSpec] = TABLES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings, clock=clock)
        self.backend = backend
        self.tables = tables
        self._redactor = (
            Redactor(
                phone_region=settings.redact_phone_region,
                phone_leniency=settings.redact_phone_leniency,
            )
            if settings.redact
            else None
        )
        #: replacements the sink's own redaction pass made, per table and kind, not yet
        #: taken by :meth:`take_redactions`
        self._redactions: dict[str, Counts] = {name: {} for name in tables}
        self._makers = {name: _row_maker(spec) for name, spec in tables.items()}
        #: model -> (table, row maker) for models stored in one table (not rollups)
        self._routes: dict[type[Record], tuple[str, RowMaker]] = {}
        #: rows inserted and batches per table since start
        self.inserted: dict[str, int] = {}

    def add_record(
        self,
        record: Record,
        position: Position | None = None,
        *,
        raw: bytes | None = None,
        key: bytes | None = None,
    ) -> str:
        """Buffer ``record`` for its table; returns the table. May raise ``BackPressure``."""
        route = self._routes.get(record.__class__)
        if route is None:
            route = self._route(record)
        table, make = route
        self.add(table, make(record, raw, key), position)
        return table

    def _route(self, record: Record) -> tuple[str, RowMaker]:
        table = table_for(record)
        make = self._makers.get(table)
        if make is None:
            raise StorageError(f"the sink has no table {table!r}")
        if not isinstance(record, Rollup):  # a rollup's table depends on its resolution
            self._routes[record.__class__] = (table, make)
        return table, make

    def take_redactions(self) -> dict[str, Counts]:
        """What the sink's redaction pass replaced since the last call: table -> kind -> n."""
        taken = {table: dict(c) for table, c in self._redactions.items() if c}
        for table in taken:
            self._redactions[table].clear()
        return taken

    def write(self, batch: Batch[Row]) -> Sequence[Rejected[Row]]:
        spec = self.tables.get(batch.key)
        if spec is None:
            raise StorageError(f"the sink has no table {batch.key!r}")
        if self._redactor is not None and spec.redacted_at:
            self._redact(spec, batch, self._redactor)
        return self._insert(spec, batch)

    def _redact(self, spec: TableSpec, batch: Batch[Row], redactor: Redactor) -> None:
        """Redact the batch's free text again, a column at a time, in place.

        One screen of the whole columns (:meth:`Redactor.screen`) finds the few values
        that may hold something; only those go through the precise pass. What it
        replaces is added to each row's ``sink_redactions`` and to :meth:`take_redactions`.
        A batch written again (a retry) is redacted again: redacted text stays as it
        is and counts nothing, so nothing is counted twice.
        """
        items = batch.items
        total = self._redactions.setdefault(spec.name, {})
        size = len(items)
        rows = list(map(_VALUES, items))
        passes = spec.redacted_at
        texts: list[Any] = []  # the free-text columns one after the other: one screen
        for at, _ in passes:
            texts.extend(map(itemgetter(at), rows))
        for n in redactor.screen(texts):
            value = texts[n]
            if not isinstance(value, str) or not value:
                continue
            at, is_json = passes[n // size]
            found: Counts = {}
            new = (redactor.json_text if is_json else redactor.text)(value, found)
            if not found and new is value:
                continue
            j = n % size
            row = items[j]
            values = list(row.values)
            values[at] = new
            counts = dict(row.sink_redactions or {})
            for kind, count in found.items():
                counts[kind] = counts.get(kind, 0) + count
                total[kind] = total.get(kind, 0) + count
            items[j] = row._replace(values=tuple(values), sink_redactions=counts)

    def _insert(self, spec: TableSpec, batch: Batch[Row]) -> list[Rejected[Row]]:
        try:
            columns, rows = _insert_rows(spec, batch.items)
            self.backend.insert(spec.name, columns, rows, dedup_token=batch.token())
        except (StorageError, TypeError, ValueError) as exc:
            if spans_too_many_partitions(exc):
                pieces = _split_by_partition(spec, batch)
                if pieces is not None:
                    return [r for piece in pieces for r in self._insert(spec, piece)]
            elif not is_rejection(exc):
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"insert into {spec.name}: {exc}") from exc
            if len(batch) == 1:
                return [
                    Rejected(
                        spec.name,
                        batch.items[0],
                        batch.positions[0],
                        f"ClickHouse refused the row for {spec.name}: {_reason(exc)}",
                        "StorageRejected",
                    )
                ]
            first, second = batch.split()
            return self._insert(spec, first) + self._insert(spec, second)
        self.inserted[spec.name] = self.inserted.get(spec.name, 0) + len(batch)
        return []


def _insert_rows(spec: TableSpec, items: list[Row]) -> tuple[tuple[str, ...], list[Any]]:
    """The columns and rows of an insert: ``sink_redactions`` only when a row has some
    (the column's default is the empty map, so a clean batch is inserted without it)."""
    if spec.columns[-1] == SINK_REDACTIONS and any(map(_COUNTS, items)):
        return spec.columns, [(*row.values, row.sink_redactions or {}) for row in items]
    return spec.fields, list(map(_VALUES, items))


def _partition_of(value: Any) -> Any:
    """The partition of a row by its time column: ``toYYYYMM`` (any other value: itself)."""
    if isinstance(value, dt.datetime | dt.date):
        return (value.year, value.month)
    return value


def _split_by_partition(spec: TableSpec, batch: Batch[Row]) -> list[Batch[Row]] | None:
    """The batch cut in two, each half holding half of its partitions (months), rows in order.

    ``None`` when every row is in one partition (then only halving the rows is left).
    The cut depends only on the rows, so a retry or a replay cuts the same way and the
    pieces keep their deduplication tokens.
    """
    at = spec.fields.index(spec.time_column)
    keys = [_partition_of(row.values[at]) for row in batch.items]
    ordered = list(dict.fromkeys(keys))
    if len(ordered) < 2:
        return None
    first = set(ordered[: len(ordered) // 2])
    halves: list[Batch[Row]] = []
    for wanted in (True, False):
        picked = [i for i, key in enumerate(keys) if (key in first) is wanted]
        halves.append(
            Batch(
                batch.key,
                batch.opened_at,
                [batch.items[i] for i in picked],
                [batch.positions[i] for i in picked],
            )
        )
    return halves
