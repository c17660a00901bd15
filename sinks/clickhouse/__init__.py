"""ClickHouse: backends, migrations, the table contracts and the batching sink.

Backends: the embedded engine (chdb) and a server (clickhouse-connect) speak the
same :class:`ClickHouseBackend` protocol; settings decide which one
:func:`open_backend` returns. :func:`migrate` creates and updates the tables
from ``sinks/migrations``; :data:`TABLES` says which model each table holds;
:class:`ClickHouseSink` batches records into them.
"""

from agentstream.sinks.clickhouse._backend import ClickHouseBackend, QueryResult, open_backend
from agentstream.sinks.clickhouse._migrate import (
    Migration,
    MigrationReport,
    load_migrations,
    migrate,
    render,
    split_statements,
)
from agentstream.sinks.clickhouse._sink import (
    ClickHouseSink,
    Row,
    is_rejection,
    spans_too_many_partitions,
)
from agentstream.sinks.clickhouse._tables import REDACTED_FIELDS, TABLES, TableSpec, table_for

__all__ = [
    "REDACTED_FIELDS",
    "TABLES",
    "ClickHouseBackend",
    "ClickHouseSink",
    "Migration",
    "MigrationReport",
    "QueryResult",
    "Row",
    "TableSpec",
    "is_rejection",
    "load_migrations",
    "migrate",
    "open_backend",
    "render",
    "spans_too_many_partitions",
    "split_statements",
    "table_for",
]
