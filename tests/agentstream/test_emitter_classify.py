"""Exception → (error class, error code) for tool calls."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from http import HTTPStatus
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from agentstream import ErrorClass, classify_error
from agentstream.emitter._classify import http_status


class _HttpError(Exception):
    def __init__(self, **attrs: Any) -> None:
        super().__init__("http")
        for name, value in attrs.items():
            setattr(self, name, value)


class _Response:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class ReadTimeout(OSError):
    """Named like requests' / httpx's timeouts (not a TimeoutError subclass)."""


class ConnectError(Exception):
    """Named like httpx.ConnectError (not a ConnectionError subclass)."""


class _Strict(BaseModel):
    n: int


def _pydantic_error() -> ValidationError:
    try:
        _Strict.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("pydantic accepted a bad value")


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError("slow"), (ErrorClass.TIMEOUT, "TimeoutError")),
        (asyncio.TimeoutError(), (ErrorClass.TIMEOUT, "TimeoutError")),  # noqa: UP041
        (socket.timeout(), (ErrorClass.TIMEOUT, "TimeoutError")),  # noqa: UP041
        (concurrent.futures.TimeoutError(), (ErrorClass.TIMEOUT, "TimeoutError")),
        (asyncio.CancelledError(), (ErrorClass.TIMEOUT, "CancelledError")),
        (ReadTimeout(), (ErrorClass.TIMEOUT, "ReadTimeout")),
        (ConnectionRefusedError(), (ErrorClass.RETRYABLE, "ConnectionRefusedError")),
        (ConnectionResetError(), (ErrorClass.RETRYABLE, "ConnectionResetError")),
        (ConnectError(), (ErrorClass.RETRYABLE, "ConnectError")),
        (_HttpError(status_code=503), (ErrorClass.RETRYABLE, "503")),
        (_HttpError(status_code=504), (ErrorClass.RETRYABLE, "504")),
        (_HttpError(status=500), (ErrorClass.RETRYABLE, "500")),
        (_HttpError(status_code=429), (ErrorClass.RETRYABLE, "429")),
        (_HttpError(code=HTTPStatus.BAD_GATEWAY), (ErrorClass.RETRYABLE, "502")),
        (_HttpError(response=_Response(503)), (ErrorClass.RETRYABLE, "503")),
        (_HttpError(status_code=404), (ErrorClass.NON_RETRYABLE, "404")),
        (_HttpError(status_code="400"), (ErrorClass.NON_RETRYABLE, "400")),
        (_HttpError(response=_Response(401)), (ErrorClass.NON_RETRYABLE, "401")),
        (_HttpError(status_code=422, error_class="RETRYABLE"), (ErrorClass.RETRYABLE, "422")),
        (ValueError("bad"), (ErrorClass.NON_RETRYABLE, "ValueError")),
        (_pydantic_error(), (ErrorClass.NON_RETRYABLE, "ValidationError")),
        (KeyError("k"), (ErrorClass.NON_RETRYABLE, "KeyError")),
        (RuntimeError("?"), (ErrorClass.NON_RETRYABLE, "RuntimeError")),
    ],
)
def test_exceptions_map_to_error_classes(
    exc: BaseException, expected: tuple[ErrorClass, str]
) -> None:
    assert classify_error(exc) == expected


def test_a_gateway_timeout_status_beats_a_timeout_name() -> None:
    class GatewayTimeoutError(Exception):
        status_code = 504

    assert classify_error(GatewayTimeoutError()) == (ErrorClass.RETRYABLE, "504")


@pytest.mark.parametrize("value", [True, 99, 600, "abc", None, 3.5])
def test_values_that_are_not_http_statuses_are_ignored(value: object) -> None:
    assert http_status(_HttpError(status_code=value)) is None
