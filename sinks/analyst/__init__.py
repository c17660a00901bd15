"""Analyst access: read-only queries, canned reports, roles and the query audit.

:func:`connect` picks the way in (the worker's web port when it runs and a
token is set, the database directly otherwise) and returns an :class:`Analyst`;
every query and report it runs is checked (:func:`check_read_only`, roles)
and written to ``query_audit``.
"""

from agentstream.sinks.analyst._format import OutputFormat, format_result, to_jsonable
from agentstream.sinks.analyst._guard import READ_ONLY_STATEMENTS, check_read_only, tokenize
from agentstream.sinks.analyst._http import HttpAnalyst, connect, handle_analyst_request
from agentstream.sinks.analyst._reports import (
    REPORTS,
    Report,
    duration_option,
    parse_time,
    render_report,
)
from agentstream.sinks.analyst._session import (
    AUDIT_COLUMNS,
    ROLES,
    Analyst,
    Identity,
    LocalAnalyst,
    Role,
)

__all__ = [
    "AUDIT_COLUMNS",
    "READ_ONLY_STATEMENTS",
    "REPORTS",
    "ROLES",
    "Analyst",
    "HttpAnalyst",
    "Identity",
    "LocalAnalyst",
    "OutputFormat",
    "Report",
    "Role",
    "check_read_only",
    "connect",
    "duration_option",
    "format_result",
    "handle_analyst_request",
    "parse_time",
    "render_report",
    "to_jsonable",
    "tokenize",
]
