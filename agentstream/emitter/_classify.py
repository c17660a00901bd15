"""How a failed tool call failed: exception → ``(ErrorClass, error_code)``.

Rules, first match wins:

1. an ``error_class`` attribute on the exception (an :class:`ErrorClass` or its name)
   — a library or the agent can say what it knows;
2. :class:`TimeoutError` (``asyncio.TimeoutError`` and ``socket.timeout`` are the
   same class) and ``asyncio.CancelledError`` (how ``asyncio.timeout``/``wait_for``
   interrupt the awaited call) → ``TIMEOUT``;
3. an HTTP status in ``status_code``, ``status``, ``code``, ``http_status`` or
   ``response.status_code`` / ``response.status``: 408, 425, 429 and 5xx (502, 503,
   504 included) → ``RETRYABLE``, other 4xx → ``NON_RETRYABLE``; the error code is
   the status;
4. exception classes whose name says timeout (``ReadTimeout``, ``TimeoutException``
   of requests/httpx) → ``TIMEOUT``;
5. :class:`ConnectionError` and classes named like connection errors
   (``ConnectError``, ``ConnectionError`` of requests/httpx) → ``RETRYABLE``;
6. validation errors (:class:`ValueError`, which pydantic's ``ValidationError``
   is; :class:`TypeError`, :class:`KeyError`, :class:`LookupError`) → ``NON_RETRYABLE``;
7. anything else → ``NON_RETRYABLE`` (unknown failures are not retried blindly).

The error code is the HTTP status when there is one, else the exception's class
name (``ConnectionRefusedError``).
"""

from __future__ import annotations

import asyncio
from typing import Final

from agentstream.schemas import ErrorClass

__all__ = ["classify_error", "http_status"]

_STATUS_ATTRS: Final = ("status_code", "status", "http_status", "code")
_RETRYABLE_4XX: Final = frozenset({408, 425, 429})


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        status = value
    elif isinstance(value, str) and value.isdigit():
        status = int(value)
    else:
        # enums such as http.HTTPStatus are ints; anything else is not a status
        return None
    return status if 100 <= status <= 599 else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an exception carries, if any (on itself or its ``response``)."""
    for attr in _STATUS_ATTRS:
        status = _as_status(getattr(exc, attr, None))
        if status is not None:
            return status
    response = getattr(exc, "response", None)
    if response is not None:
        for attr in ("status_code", "status"):
            status = _as_status(getattr(response, attr, None))
            if status is not None:
                return status
    return None


def _named(exc: BaseException, *needles: str) -> bool:
    return any(needle in cls.__name__.lower() for cls in type(exc).__mro__ for needle in needles)


def _explicit(exc: BaseException) -> ErrorClass | None:
    value = getattr(exc, "error_class", None)
    if isinstance(value, ErrorClass):
        return value
    if isinstance(value, str):
        try:
            return ErrorClass(value.upper())
        except ValueError:
            return None
    return None


def classify_error(exc: BaseException) -> tuple[ErrorClass, str]:
    """``(error_class, error_code)`` of an exception raised by a tool call (rules above)."""
    status = http_status(exc)
    code = str(status) if status is not None else type(exc).__name__
    explicit = _explicit(exc)
    if explicit is not None and explicit is not ErrorClass.NONE:
        return explicit, code
    if isinstance(exc, TimeoutError | asyncio.CancelledError):
        return ErrorClass.TIMEOUT, code
    if status is not None:
        if status >= 500 or status in _RETRYABLE_4XX:
            return ErrorClass.RETRYABLE, code
        return ErrorClass.NON_RETRYABLE, code
    if _named(exc, "timeout"):
        return ErrorClass.TIMEOUT, code
    if isinstance(exc, ConnectionError) or _named(exc, "connecterror", "connectionerror"):
        return ErrorClass.RETRYABLE, code
    return ErrorClass.NON_RETRYABLE, code
