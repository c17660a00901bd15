"""`agentstream keys`: the API keys analysts (and their tools) authenticate with."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def _create(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import KeyStore

    store = KeyStore(get_settings().analyst.keys_file)
    key, secret = store.create(args.name, args.role, args.tenant)
    scope = f" for tenant {key.tenant}" if key.tenant else ""
    print(f"created key {key.name!r} ({key.role}{scope}) in {store.path}")
    print("its secret (shown once, store it now):")
    print(secret)
    return 0


def _list(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import KeyStore

    keys = KeyStore(get_settings().analyst.keys_file).keys()
    if not keys:
        print("no API keys (agentstream keys create NAME --role ...)")
        return 0
    width = max(len(k.name) for k in keys)
    for key in keys:
        print(f"{key.name:<{width}}  {key.role:<6}  {key.tenant or '-':<20}  {key.created_at}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from agentstream.core.config import get_settings
    from agentstream.sinks.analyst import KeyStore

    key = KeyStore(get_settings().analyst.keys_file).revoke(args.name)
    print(f"revoked key {key.name!r}; requests with it are refused from now on")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keys create|list|revoke``."""
    keys = subparsers.add_parser(
        "keys",
        help="API keys for analyst access (create, list, revoke)",
        description="API keys name who queries and what they may read: the role (admin: "
        "everything incl. query_audit; oncall: all but query_audit; tenant: the tenant's "
        "rows only) and tenant come from the key, never from the request. Keys are stored "
        "hashed (HMAC-SHA256, per-key salt) in analyst.keys_file; a running worker picks up "
        "changes without a restart.",
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a key and print its secret once",
        description="Create a key; its secret is printed once and never stored.",
    )
    create.add_argument("name", help="key name (the ClickHouse user name clients send)")
    create.add_argument("--role", required=True, choices=("admin", "oncall", "tenant"))
    create.add_argument("--tenant", default=None, help="the tenant of a tenant key")
    create.set_defaults(handler=_create)
    listing = actions.add_parser(
        "list", help="list keys (name, role, tenant, created)", description="List the keys."
    )
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser(
        "revoke", help="revoke a key", description="Remove a key; its requests are refused."
    )
    revoke.add_argument("name", help="key name")
    revoke.set_defaults(handler=_revoke)
