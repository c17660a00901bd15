"""`agentstream alerts`: recent and firing alerts, test notifications."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands (none yet)."""
