"""Schema registries: the in-memory double and the stdlib HTTP client (against a fake server)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from agentstream.schemas import (
    RECORD_TYPES,
    AvroCodec,
    CodecError,
    HttpSchemaRegistry,
    InMemorySchemaRegistry,
    SchemaRegistry,
    SchemaRegistryError,
    ToolCall,
)
from tests.support.registry import FakeRegistry, serve_registry

SCHEMA = RECORD_TYPES["ToolCall"].schema_text


@pytest.fixture
def server() -> Iterator[tuple[str, type[FakeRegistry]]]:
    with serve_registry() as served:
        yield served


def test_in_memory_registry_ids_are_global_per_schema() -> None:
    registry = InMemorySchemaRegistry()
    first = registry.register("a-value", SCHEMA)
    assert registry.register("a-value", SCHEMA) == first
    # the same schema (even re-formatted) under another subject keeps its id
    assert registry.register("b-value", json.dumps(json.loads(SCHEMA), indent=2)) == first
    other = registry.register("a-value", RECORD_TYPES["ModelCall"].schema_text)
    assert other != first
    assert registry.get(first) == SCHEMA
    assert registry.subjects() == {"a-value": [first, other], "b-value": [first]}
    with pytest.raises(SchemaRegistryError, match="schema id 999 is not registered"):
        registry.get(999)
    with pytest.raises(SchemaRegistryError, match="not JSON"):
        registry.register("a-value", "{nope")
    assert isinstance(registry, SchemaRegistry)
    assert issubclass(SchemaRegistryError, CodecError)


def test_http_registry_registers_and_fetches(server: tuple[str, type[FakeRegistry]]) -> None:
    url, handler = server
    registry = HttpSchemaRegistry(url + "/", username="svc", password="s3cret")
    assert isinstance(registry, SchemaRegistry)
    schema_id = registry.register("io.agentstream.v1.ToolCall", SCHEMA)
    assert schema_id == 100
    assert registry.register("io.agentstream.v1.ToolCall", SCHEMA) == 100  # cached
    method, path, headers, body = handler.requests[0]
    assert (method, path) == ("POST", "/subjects/io.agentstream.v1.ToolCall/versions")
    assert body == {"schema": SCHEMA}
    assert headers["Content-Type"] == "application/vnd.schemaregistry.v1+json"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"svc:s3cret").decode()
    assert len(handler.requests) == 1

    fresh = HttpSchemaRegistry(url)
    assert fresh.get(100) == SCHEMA
    assert fresh.get(100) == SCHEMA  # cached
    assert [r[:2] for r in handler.requests[1:]] == [("GET", "/schemas/ids/100")]
    assert "Authorization" not in handler.requests[1][2]


def test_http_registry_errors_are_typed(server: tuple[str, type[FakeRegistry]]) -> None:
    url, _ = server
    registry = HttpSchemaRegistry(url)
    with pytest.raises(
        SchemaRegistryError, match=r"HTTP 404 \(error_code 40403: Schema not found\)"
    ):
        registry.get(7)
    with pytest.raises(SchemaRegistryError, match=r"HTTP 409.*incompatible"):
        registry.register("refused/subject", SCHEMA)
    with pytest.raises(SchemaRegistryError, match="must be http"):
        HttpSchemaRegistry("file:///etc/passwd")
    # a port nobody listens on: the server's port after it is closed
    unreachable = HttpSchemaRegistry("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        unreachable.get(1)


def test_codec_round_trip_through_the_http_registry(
    server: tuple[str, type[FakeRegistry]],
) -> None:
    url, handler = server
    producer = AvroCodec("confluent", HttpSchemaRegistry(url))
    event = ToolCall(
        tenant_id="acme",
        user_id="u",
        agent_id="planner",
        agent_version="1",
        run_id="r",
        tool="search",
        status="SUCCESS",
        latency_ms=3.0,
    )
    data = producer.encode_model(event)
    assert data[:5] == b"\x00" + (100).to_bytes(4, "big")
    consumer = AvroCodec("confluent", HttpSchemaRegistry(url))
    assert consumer.decode_model(data, ToolCall) == event
    assert consumer.decode_model(data, ToolCall) == event
    assert [r[0] for r in handler.requests] == ["POST", "GET"]  # the id is fetched once
