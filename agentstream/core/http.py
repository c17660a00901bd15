"""What an HTTP handler answers, framework-free: the worker's web port serves it, and the
analyst's ClickHouse HTTP interface and the health pages produce it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpReply"]


@dataclass(frozen=True)
class HttpReply:
    """What to send back: status, headers (``Content-Length`` is added when sent), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any) -> HttpReply:
        return cls(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())
