"""Test data for analyst access: tool calls of a few tenants, and the audit rows."""

from __future__ import annotations

import datetime as dt

from agentstream.core.config import Settings
from agentstream.schemas import ToolCall
from agentstream.sinks.clickhouse import ClickHouseBackend, ClickHouseSink, migrate

__all__ = ["TENANTS", "audit_rows", "populate", "tool_calls"]

TENANTS = {"acme": 9, "globex": 5, "initech": 3}


def tool_calls(tenant: str, n: int, start: int = 0) -> list[ToolCall]:
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    return [
        ToolCall(
            tenant_id=tenant,
            user_id="u",
            agent_id="a",
            agent_version="1",
            run_id=f"{tenant}-r{i}",
            event_time=now + dt.timedelta(seconds=i),
            tool=f"tool-{i % 2}",
            status="SUCCESS" if i % 4 else "ERROR",
            error_class="NONE" if i % 4 else "TIMEOUT",
            latency_ms=float(i),
        )
        for i in range(start, start + n)
    ]


def populate(backend: ClickHouseBackend, settings: Settings) -> list[ToolCall]:
    migrate(backend, settings)
    sink = ClickHouseSink(backend, settings.sink)
    calls = [call for tenant, n in TENANTS.items() for call in tool_calls(tenant, n)]
    for call in calls:
        sink.add_record(call)
    sink.flush(force=True).raise_for_error()
    return calls


def audit_rows(backend: ClickHouseBackend, where: str = "1") -> list[dict[str, object]]:
    return backend.query(
        "SELECT who, key_name, role, tenant_scope, via, kind, statement, statement_run, rows, "
        f"refused, outcome, error FROM query_audit WHERE {where} ORDER BY at"
    ).dicts()
