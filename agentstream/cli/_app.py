"""Parser assembly and the one place CLI errors become one-line messages."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from agentstream.core.errors import AgentstreamError

__all__ = ["main"]

#: command-group modules; each defines ``register(subparsers)``
_GROUPS = (
    "agentstream.cli.kafka",
    "agentstream.cli.stack",
    "agentstream.cli.spool",
    "agentstream.cli.topics",
    "agentstream.cli.worker",
    "agentstream.cli.lag",
    "agentstream.cli.analyst",
    "agentstream.cli.keys",
    "agentstream.cli.alerts",
    "agentstream.cli.simulate",
    "agentstream.cli.soak",
    "agentstream.cli.compare",
)

Handler = Callable[[argparse.Namespace], int]

#: top-level modules that come with ``pip install 'agentstream[worker]'``, not the base install
_WORKER_EXTRA = frozenset(
    {"chdb", "clickhouse_connect", "ddsketch", "rich", "yaml", "httpx", "opentelemetry", "sqlglot"}
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentstream",
        description="The event backbone for AI agents in production.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _GROUPS:
        import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except AgentstreamError as exc:
        print(f"agentstream: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _WORKER_EXTRA:
            raise
        print(
            f"agentstream: error: '{args.command}' needs the worker extra "
            f"(no module {exc.name!r}): pip install 'agentstream[worker]'",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("agentstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
