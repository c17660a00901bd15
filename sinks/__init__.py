"""Sinks: ClickHouse (embedded chdb or server) and alert channels.

The contract every sink follows lives here (:class:`Sink`, :class:`BatchingSink`)
with its test double :class:`ListSink`; the ClickHouse parts are in
:mod:`sinks.clickhouse`, the Kafka → ClickHouse loop in :mod:`sinks.consumer`,
analyst access in :mod:`sinks.analyst`.
"""

from agentstream.sinks._base import (
    Batch,
    BatchingSink,
    BatchTiming,
    FlushReport,
    Position,
    Rejected,
    Sink,
)
from agentstream.sinks._list import ListSink

__all__ = [
    "Batch",
    "BatchTiming",
    "BatchingSink",
    "FlushReport",
    "ListSink",
    "Position",
    "Rejected",
    "Sink",
]
