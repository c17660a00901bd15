"""Analyst access: API keys, checked read-only SQL, canned reports, the query audit.

* :class:`KeyStore` — API keys (hashed) with a role and a tenant;
* :func:`check_statement` — one statement parsed (sqlglot, ClickHouse dialect),
  checked against the key's tables and the function allow-list, tenant-scoped and
  re-rendered;
* :class:`AnalystEngine` — runs checked statements with the role's limits and
  writes every request to ``query_audit``;
* :class:`AnalystHttp` — ClickHouse's HTTP interface over it (clickhouse-connect,
  Grafana, curl);
* :func:`connect` — the CLI's way in (the worker's HTTP interface, or the folder).
"""

from agentstream.sinks.analyst._checker import (
    ANALYST_TABLES,
    OUTPUT_FORMATS,
    CheckedStatement,
    check_statement,
    readable_tables,
)
from agentstream.sinks.analyst._client import (
    Analyst,
    HttpAnalyst,
    analyst_engine,
    connect,
    open_analyst_reader,
)
from agentstream.sinks.analyst._format import OutputFormat, format_result, to_jsonable
from agentstream.sinks.analyst._functions import ALLOWED_FUNCTIONS, is_allowed_function
from agentstream.sinks.analyst._handshake import HANDSHAKE_QUERIES
from agentstream.sinks.analyst._http import TRANSPORT_ARGUMENTS, AnalystHttp, HttpReply
from agentstream.sinks.analyst._keys import ROLES, ApiKey, KeyStore, Principal, Role
from agentstream.sinks.analyst._reports import (
    REPORTS,
    Report,
    duration_option,
    parse_time,
    render_report,
)
from agentstream.sinks.analyst._server_ddl import analyst_ddl
from agentstream.sinks.analyst._session import (
    AUDIT_COLUMNS,
    AnalystEngine,
    LocalAnalyst,
    RawQueryBackend,
    RawResult,
)

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ANALYST_TABLES",
    "AUDIT_COLUMNS",
    "HANDSHAKE_QUERIES",
    "OUTPUT_FORMATS",
    "REPORTS",
    "ROLES",
    "TRANSPORT_ARGUMENTS",
    "Analyst",
    "AnalystEngine",
    "AnalystHttp",
    "ApiKey",
    "CheckedStatement",
    "HttpAnalyst",
    "HttpReply",
    "KeyStore",
    "LocalAnalyst",
    "OutputFormat",
    "Principal",
    "RawQueryBackend",
    "RawResult",
    "Report",
    "Role",
    "analyst_ddl",
    "analyst_engine",
    "check_statement",
    "connect",
    "duration_option",
    "format_result",
    "is_allowed_function",
    "open_analyst_reader",
    "parse_time",
    "readable_tables",
    "render_report",
    "to_jsonable",
]
