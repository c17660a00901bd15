"""The retired JSON endpoint (``POST /analyst/query`` with a shared token and a role in the body).

It let the caller name its own role; it is gone. :func:`handle_analyst_request`
stays only so a worker that still mounts it keeps starting: it answers 410 and
points at the ClickHouse HTTP interface (:class:`AnalystHttp`) and API keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["handle_analyst_request"]


def handle_analyst_request(
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    backend: Any = None,
    token: str = "",
) -> tuple[int, dict[str, Any]]:
    """Always ``410 Gone``: analysts use API keys and the ClickHouse HTTP interface."""
    del path, headers, body, backend, token
    return 410, {
        "error": "the JSON analyst endpoint is retired: create an API key (agentstream keys "
        "create) and use the ClickHouse HTTP interface (clickhouse-connect, curl, Grafana)",
        "refused": True,
    }
