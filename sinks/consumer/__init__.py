"""The sink worker: a Kafka consumer group that stores every topic in ClickHouse.

:class:`SinkWorker` consumes the raw event topics and the processors' outputs
(see :func:`routes`), batches them through :class:`~sinks.clickhouse.ClickHouseSink`
and commits offsets only after the rows are stored.
"""

from agentstream.sinks.consumer._loop import SinkHealth, SinkStats
from agentstream.sinks.consumer._routing import BadRecordPolicy, Route, dead_letter, routes
from agentstream.sinks.consumer._worker import SinkWorker

__all__ = [
    "BadRecordPolicy",
    "Route",
    "SinkHealth",
    "SinkStats",
    "SinkWorker",
    "dead_letter",
    "routes",
]
