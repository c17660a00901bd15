"""Waiting on a condition with a deadline: the suite's one polling loop (no fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], bool], what: str, *, timeout_s: float = 60.0, poll_s: float = 0.02
) -> None:
    """Return once ``condition()`` holds; ``AssertionError`` naming ``what`` after
    ``timeout_s`` (a bound, not a measured threshold)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(poll_s)
