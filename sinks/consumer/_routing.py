"""Which topics the sink reads, what each must hold, and what happens to bad records.

Raw event topics (``tool_calls``, ``model_calls``, ``reviews``) are also read
by the processors' contract gate, which dead-letters every record that does
not decode or breaks the contract. The sink skips (and counts) such records
there instead of dead-lettering them a second time: one bad record, one dead
letter. On the processors' output topics (``lifecycle``, ``rollups``,
``alerts``) nobody else checks, so the sink dead-letters them itself. A bad
record on the dead-letter topic (``invalid``) is logged and dropped: sending
it back where it came from would loop.

Transitions are read from ``lifecycle`` (validated and synthesized ones, with
dwell times), not from the raw ``transitions`` topic: an invalid transition
never reaches ``state_transitions``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from agentstream.core.catalog import STREAMS, BadRecordPolicy
from agentstream.core.config import TopicSettings
from agentstream.schemas import (
    InvalidEvent,
    Record,
)

__all__ = ["BadRecordPolicy", "Route", "dead_letter", "routes"]

#: the streams the sink reads, with what it does with a bad record of each
_STREAMS: tuple[tuple[str, type[Record], BadRecordPolicy], ...] = tuple(
    (s.name, s.model, s.sink) for s in STREAMS if s.sink is not None
)

#: the namespace of dead-letter ids: the same bad record always gets the same invalid_id
_DEAD_LETTER_NAMESPACE = uuid.UUID("6f1d2c1e-4c1b-5a7e-9b5e-0c1e2d3f4a5b")
_MAX_RAW = 1024 * 1024
_MAX_REASON = 4096


@dataclass(frozen=True)
class Route:
    """One topic the sink consumes."""

    stream: str
    topic: str
    model: type[Record]
    on_bad: BadRecordPolicy


def routes(topics: TopicSettings, streams: tuple[str, ...] | None = None) -> dict[str, Route]:
    """Topic name → :class:`Route` for the sink's streams (all of them by default)."""
    chosen = {stream for stream, _, _ in _STREAMS} if streams is None else set(streams)
    unknown = chosen - {stream for stream, _, _ in _STREAMS}
    if unknown:
        raise ValueError(f"the sink does not consume {', '.join(sorted(unknown))}")
    return {
        topics.name(stream): Route(stream, topics.name(stream), model, policy)
        for stream, model, policy in _STREAMS
        if stream in chosen
    }


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    raw: bytes,
    reason: str,
    error_type: str,
    run_id: str | None = None,
    tenant_id: str | None = None,
    event_id: str | None = None,
) -> InvalidEvent:
    """The dead letter of one record; its ``invalid_id`` is derived from where it came from."""
    invalid_id = uuid.uuid5(_DEAD_LETTER_NAMESPACE, f"{topic}/{partition}/{offset}/{error_type}")
    if len(raw) > _MAX_RAW:
        reason = f"{reason} (raw truncated from {len(raw)} bytes)"
        raw = raw[:_MAX_RAW]
    return InvalidEvent(
        invalid_id=str(invalid_id),
        source_topic=topic,
        partition=partition,
        offset=offset,
        key=key[:_MAX_RAW] if key is not None else None,
        raw=raw,
        reason=(reason or error_type)[:_MAX_REASON],
        error_type=error_type[:256],
        run_id=(run_id or None) and run_id[:256],
        tenant_id=(tenant_id or None) and tenant_id[:256],
        event_id=(event_id or None) and event_id[:256],
    )
