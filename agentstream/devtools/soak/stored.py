"""Read what the worker stored in ClickHouse, in the truth's terms (:class:`.compare.Stored`).

Reads the deduplicated tables (``FINAL``: the rollup row with the latest
``computed_at`` per window and scope) through the sink's backend.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agentstream.core.config import ClickHouseSettings
from agentstream.core.errors import AgentstreamError
from agentstream.devtools.soak.compare import DeadLetter, Stored, StoredCell
from agentstream.devtools.soak.truth import FIGURES, QUANTILES, RESOLUTIONS, Timeout
from agentstream.schemas import decode_model

__all__ = ["read_stored"]

_ABSURD = "(toYear({col}) < 2000 OR toYear({col}) >= 2100)"
_FIGURE_COLUMNS = [f for f in FIGURES if f != "cost_nusd"]


def _event_id_of(raw_hex: str) -> str | None:
    """The ``event_id`` inside a dead letter's raw bytes, if they decode to an agent event."""
    try:
        record: Any = decode_model(bytes.fromhex(raw_hex))
    except (AgentstreamError, ValueError):
        return None
    event_id = getattr(record, "event_id", None)
    return str(event_id) if event_id is not None else None


def read_stored(settings: ClickHouseSettings, cutoff: datetime) -> Stored:
    """What the tables hold; rollup windows ending after ``cutoff`` are left out."""
    from agentstream.sinks.clickhouse import open_backend

    backend = open_backend(settings.model_copy(update={"fault_file": None}))
    try:
        return _read(backend, cutoff)
    finally:
        backend.close()


def _read(backend: Any, cutoff: datetime) -> Stored:
    stored = Stored()
    for table in ("tool_calls", "model_calls", "review_decisions"):
        ids = backend.query(f"SELECT DISTINCT toString(event_id) FROM {table} FINAL")
        stored.records[table] = {str(row[0]) for row in ids.rows}
        absurd = backend.query(
            f"SELECT count() FROM {table} FINAL WHERE {_ABSURD.format(col='event_time')}"
        )
        stored.absurd_records += int(absurd.scalar() or 0)
    result = backend.query(
        "SELECT toString(event_id), run_id, from_state, to_state, synthesized, "
        "toUnixTimestamp64Micro(event_time) FROM state_transitions FINAL"
    )
    for event_id, run_id, source, target, synthesized, at in result.rows:
        if synthesized:
            stored.timeouts.setdefault(run_id, []).append(Timeout(str(source), int(at)))
        else:
            stored.transitions.add(str(event_id))
        if target == "COMPLETED":
            stored.runs_completed.add(run_id)
        elif target == "FAILED":
            stored.runs_failed.add(run_id)
    result = backend.query(
        "SELECT event_id, hex(raw), reason, error_type, source_topic FROM invalid_events FINAL"
    )
    for event_id, raw, reason, error_type, source in result.rows:
        found = str(event_id) if event_id else _event_id_of(str(raw))
        stored.dead_letters.append(DeadLetter(found, str(reason), str(error_type), str(source)))
    columns = ", ".join(_FIGURE_COLUMNS)
    quantiles = ", ".join(QUANTILES)
    for resolution in RESOLUTIONS:
        table = f"rollups_{resolution}"
        result = backend.query(
            f"SELECT scope_kind, scope_key, toUnixTimestamp64Micro(window_start), "
            f"toString(toJSONString(state_time_ms)), round(cost_usd * 1000000000), "
            f"{quantiles}, {columns} FROM {table} FINAL "
            "WHERE window_end <= {cutoff:DateTime64(6, 'UTC')} "
            f"AND NOT {_ABSURD.format(col='window_start')}",
            {"cutoff": cutoff},
        )
        for row in result.rows:
            kind, key, start, state_ms, cost = row[:5]
            qs = row[5 : 5 + len(QUANTILES)]
            figures = dict(zip(_FIGURE_COLUMNS, row[5 + len(QUANTILES) :], strict=True))
            cell = StoredCell(
                str(kind),
                {name: int(value) for name, value in figures.items()},
                {str(k): int(v) for k, v in json.loads(state_ms).items()},
                {
                    name: float(v) if v is not None else None
                    for name, v in zip(QUANTILES, qs, strict=True)
                },
            )
            cell.figures["cost_nusd"] = int(cost)
            stored.cells[(resolution, int(start), str(key))] = cell
        absurd = backend.query(
            f"SELECT count() FROM {table} FINAL WHERE {_ABSURD.format(col='window_start')}"
        )
        stored.absurd_windows += int(absurd.scalar() or 0)
    return stored
