"""`agentstream demo` and `agentstream stack status`: the whole local stack."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands (none yet)."""
