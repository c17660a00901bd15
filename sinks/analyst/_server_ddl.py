"""Server mode: the ClickHouse users analyst queries run as (printed by ``migrate --print``).

* a settings profile per role with the role's limits as maxima and ``readonly = 2``
  (reads only; the interface may still lower limits per query);
* ``<analyst_username>``: read-only user for admin and oncall keys, ``SELECT`` on the
  analyst tables (``query_audit`` only through admin keys, which the interface checks);
* per tenant key ``<analyst_username>_t_<key>``: ``SELECT`` on the tenant tables only, and a
  restrictive row policy ``tenant_id = '<tenant>'`` on each, so the server itself keeps
  the tenant's rows apart.

Passwords are never printed: users are created ``IDENTIFIED WITH sha256_hash`` of
``clickhouse.analyst_password``. The writer user (``clickhouse.username``) is never
used for analyst queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from agentstream.core.config import Settings
from agentstream.sinks.analyst._checker import ANALYST_TABLES
from agentstream.sinks.analyst._keys import ApiKey

__all__ = ["analyst_ddl", "tenant_user"]


def _q(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def tenant_user(settings: Settings, key_name: str) -> str:
    """The server user a tenant key's queries run as."""
    return f"{settings.clickhouse.analyst_username}_t_{key_name}"


def _profile(settings: Settings, role: str) -> tuple[str, str]:
    limits = settings.analyst.limits(role)
    name = f"{settings.clickhouse.analyst_username}_{role}"
    parts = [
        "readonly = 2",
        f"max_execution_time = {limits.max_execution_time_s:g} MAX {limits.max_execution_time_s:g}",
        f"max_result_rows = {limits.max_result_rows} MAX {limits.max_result_rows}",
        f"max_result_bytes = {limits.max_result_bytes} MAX {limits.max_result_bytes}",
        f"max_memory_usage = {limits.max_memory_usage} MAX {limits.max_memory_usage}",
        f"max_threads = {limits.max_threads} MAX {limits.max_threads}",
    ]
    return name, (
        f"CREATE SETTINGS PROFILE IF NOT EXISTS {_ident(name)} SETTINGS " + ", ".join(parts)
    )


def analyst_ddl(settings: Settings, keys: Sequence[ApiKey]) -> list[str]:
    """The statements (without ``;``) that create the analyst users, grants and row policies."""
    db = settings.clickhouse.database
    user = settings.clickhouse.analyst_username
    digest = hashlib.sha256(settings.clickhouse.analyst_password.get_secret_value().encode())
    identified = f"IDENTIFIED WITH sha256_hash BY {_q(digest.hexdigest())}"
    statements: list[str] = []
    profiles = {role: _profile(settings, role) for role in ("admin", "tenant")}
    statements += [ddl for _, ddl in profiles.values()]
    statements.append(
        f"CREATE USER IF NOT EXISTS {_ident(user)} {identified} "
        f"DEFAULT DATABASE {_ident(db)} SETTINGS PROFILE {_q(profiles['admin'][0])}"
    )
    for table in sorted(t for t, roles in ANALYST_TABLES.items() if roles & {"admin", "oncall"}):
        statements.append(f"GRANT SELECT ON {_ident(db)}.{_ident(table)} TO {_ident(user)}")
    tenant_tables = sorted(t for t, roles in ANALYST_TABLES.items() if "tenant" in roles)
    for key in keys:
        if key.role != "tenant" or key.tenant is None:
            continue
        name = tenant_user(settings, key.name)
        statements.append(
            f"CREATE USER IF NOT EXISTS {_ident(name)} {identified} "
            f"DEFAULT DATABASE {_ident(db)} SETTINGS PROFILE {_q(profiles['tenant'][0])}"
        )
        for table in tenant_tables:
            statements.append(f"GRANT SELECT ON {_ident(db)}.{_ident(table)} TO {_ident(name)}")
        on = ", ".join(f"{_ident(db)}.{_ident(t)}" for t in tenant_tables)
        statements.append(
            f"CREATE ROW POLICY IF NOT EXISTS {_ident(name)} ON {on} FOR SELECT "
            f"USING tenant_id = {_q(key.tenant)} AS RESTRICTIVE TO {_ident(name)}"
        )
    return statements
