"""The worker's web server as HTTP clients see it: routes, HEAD, keep-alive after an unread
body, a bad Content-Length, a handler that raises."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator

import pytest

from agentstream.core.config import WorkerSettings
from agentstream.core.http import HttpReply
from agentstream.worker._web import HttpRequest, Routes, WebServer


def _fallback(request: HttpRequest) -> HttpReply:
    if request.path == "/boom":
        raise RuntimeError("handler bug")
    if request.path == "/echo":
        return HttpReply(200, {"Content-Type": "text/plain"}, request.read_body(1 << 20))
    return HttpReply(401, {"Content-Type": "text/plain"}, b"no key\n")  # body left unread


@pytest.fixture
def port() -> Iterator[int]:
    routes = Routes(
        health=lambda: HttpReply.json(200, {"status": "ok"}),
        ready=lambda: HttpReply.json(503, {"ready": False, "reason": "restoring"}),
        metrics_page=lambda: b"agentstream_up 1\n",
        fallback=_fallback,
    )
    server = WebServer(WorkerSettings(web_port=0), routes)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture
def connect(port: int) -> Iterator[Callable[[], http.client.HTTPConnection]]:
    opened: list[http.client.HTTPConnection] = []

    def make() -> http.client.HTTPConnection:
        opened.append(http.client.HTTPConnection("127.0.0.1", port, timeout=10))
        return opened[-1]

    yield make
    for conn in opened:
        conn.close()


def test_routes_and_head(connect: Callable[[], http.client.HTTPConnection]) -> None:
    conn = connect()
    conn.request("GET", "/health")
    response = conn.getresponse()
    assert (response.status, json.loads(response.read())) == (200, {"status": "ok"})
    conn.request("GET", "/ready")
    response = conn.getresponse()
    assert response.status == 503
    assert json.loads(response.read())["reason"] == "restoring"
    conn.request("HEAD", "/metrics")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == str(len(b"agentstream_up 1\n"))
    assert response.read() == b""


def test_a_body_is_read_once_and_keep_alive_survives(
    connect: Callable[[], http.client.HTTPConnection],
) -> None:
    conn = connect()
    for body in (b"first", b"second"):
        conn.request("POST", "/echo", body=body)
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, body)


def test_an_unread_body_closes_the_connection(
    connect: Callable[[], http.client.HTTPConnection],
) -> None:
    conn = connect()
    conn.request("POST", "/", body=b"SELECT 1 -- never read")
    response = conn.getresponse()
    assert response.status == 401
    assert response.getheader("Connection") == "close"
    response.read()
    # a new connection is needed; the server did not read the body as the next request
    conn2 = connect()
    conn2.request("GET", "/health")
    assert conn2.getresponse().status == 200


def test_a_bad_content_length_and_a_raising_handler_get_answers(
    connect: Callable[[], http.client.HTTPConnection],
) -> None:
    conn = connect()
    conn.putrequest("POST", "/echo")
    conn.putheader("Content-Length", "abc")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 400
    response.read()
    conn = connect()
    conn.request("GET", "/boom")
    response = conn.getresponse()
    assert response.status == 500
    assert "internal error" in json.loads(response.read())["error"]
