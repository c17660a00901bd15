"""The codec: framings, fingerprints, round trips, schema resolution and failures."""

from __future__ import annotations

import io
import json
import random
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

import agentstream.schemas._catalog as catalog
from agentstream.schemas import (
    CONFLUENT_MAGIC,
    MODELS,
    RECORD_TYPES,
    SINGLE_OBJECT_MAGIC,
    Alert,
    AvroCodec,
    CodecError,
    EvalResult,
    EventValidationError,
    Feedback,
    InMemorySchemaRegistry,
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    SchemaVersion,
    StateTransition,
    ToolCall,
    decode,
    decode_dict,
    decode_model,
    encode_dict,
    encode_model,
)
from agentstream.schemas._codec import make_writer
from agentstream.schemas._writer import compile_writer, uvarint
from tests.support import records

CONTEXT = records.CONTEXT
T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)

# -- independent ground truth: the Avro specification's CRC-64-AVRO ---------------

EMPTY64 = 0xC15D213AA4D7A795


def _table() -> list[int]:
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY64 & -(fp & 1))
        table.append(fp)
    return table


FP_TABLE = _table()


def spec_fingerprint64(data: bytes) -> int:
    fp = EMPTY64
    for byte in data:
        fp = (fp >> 8) ^ FP_TABLE[(fp ^ byte) & 0xFF]
    return fp


def spec_zigzag_varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


# -- samples -------------------------------------------------------------------


def samples() -> list[Record]:
    """Every record, with optional fields both empty and filled."""
    window = {"window_start": T0, "window_end": T0 + timedelta(minutes=1)}
    return [
        ToolCall(**CONTEXT, tool="search", status="SUCCESS", latency_ms=12.5),
        ToolCall(
            **CONTEXT,
            event_time=T0,
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            tool="pay",
            status="ERROR",
            error_class="TIMEOUT",
            error_code="504",
            latency_ms=30_000.0,
            timeout_ms=30_000.0,
            attempt=3,
            fallback_used=True,
            output_valid=False,
            idempotent=True,
            atomic=True,
            retention="LEGAL",
            params={"amount": 12.5, "note": "ünïcödé ✓", "big": "x" * 3000},
            result_summary="gateway timeout",
        ),
        ModelCall(
            **CONTEXT,
            model="gpt-4o",
            provider="openai",
            input_tokens=2**40,
            output_tokens=0,
            cost_usd=0.0125,
            latency_ms=812.0,
            status="PARTIAL",
            error_class="RETRYABLE",
        ),
        StateTransition(**CONTEXT, to_state="INIT"),
        StateTransition(
            **CONTEXT,
            from_state="EXECUTING",
            to_state="FAILED",
            reason="budget exceeded",
            error_category="TIMEOUT",
            dwell_ms=600_001,
            synthesized=True,
        ),
        ReviewDecision(**CONTEXT, reviewer="alice", decision="OVERRIDDEN", comment="wrong tone"),
        InvalidEvent(
            source_topic="agent.tool_calls",
            partition=5,
            offset=2**40,
            key=b"run-42",
            raw=bytes(range(256)),
            reason="cannot decode",
            error_type="CodecError",
            run_id="run-42",
        ),
        Rollup(
            resolution="1s",
            scope_kind="AGENT",
            scope_key="agent=planner@1.4.0",
            agent_id="planner",
            agent_version="1.4.0",
            count=10,
            success=7,
            partial=1,
            error=2,
            timeout=1,
            retryable=1,
            latency_p50=10.0,
            latency_p95=95.5,
            latency_p99=120.25,
            latency_sketch=b"\x01\x02sketch",
            tokens_in=1000,
            cost_usd=1.5,
            state_time_ms={"INIT": 5, "EXECUTING": 2**33},
            **window,
        ),
        Alert(
            rule_id="error-rate",
            state="RESOLVED",
            severity="WARNING",
            scope_key="global",
            metric="error_rate",
            value=0.01,
            threshold=0.05,
            comparator=">",
            resolution="1m",
            message="error rate back to 1%",
            channels=["log", "slack"],
            **window,
        ),
        EvalResult(
            **CONTEXT,
            suite="smoke",
            task_id="t-7",
            expected="Paris",
            got="Lyon",
            correct=False,
            latency_ms=812.5,
            cost_usd=0.004,
        ),
        Feedback(**CONTEXT, satisfaction=2, comment="slow ✓"),
        StateTransition(
            **CONTEXT,
            from_state="REVIEWING",
            to_state="COMPLETED",
            parent_run_id="run-1",
            handoff_from_agent="triage",
            value_usd=42.5,
        ),
    ]


SAMPLES = samples()


def parse(schema: Any) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


def fastavro_bytes(schema: dict[str, Any], datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()


# -- fingerprints and framing ---------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "java_long"),
    [  # published in the Avro project's share/test/data/schema-tests.txt
        ('"null"', 7195948357588979594),
        ('"int"', 8247732601305521295),
        ('"string"', -8142146995180207161),
        ('"boolean"', -6970731678124411036),
    ],
)
def test_spec_fingerprint_matches_published_vectors(schema: str, java_long: int) -> None:
    assert struct.unpack("<q", spec_fingerprint64(schema.encode()).to_bytes(8, "little"))[0] == (
        java_long
    )
    assert catalog.crc64_avro(schema) == spec_fingerprint64(schema.encode()).to_bytes(8, "little")


def test_parsing_canonical_form_follows_the_spec() -> None:
    schema = {
        "type": "record",
        "name": "Ping",
        "namespace": "io.example",
        "doc": "dropped",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "tag", "type": ["null", "string"], "default": None, "doc": "dropped"},
        ],
    }
    expected = (
        '{"name":"io.example.Ping","type":"record","fields":['
        '{"name":"at","type":"long"},{"name":"tag","type":["null","string"]}]}'
    )
    version = SchemaVersion.from_schema("Ping", 1, schema)
    assert version.canonical == expected
    assert version.fingerprint == spec_fingerprint64(expected.encode()).to_bytes(8, "little")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.avro_name)
def test_single_object_header_is_magic_and_fingerprint(model: type[Record]) -> None:
    rt = RECORD_TYPES[model.avro_name]
    sample = next(s for s in SAMPLES if type(s) is model)
    data = encode_model(sample)
    assert data[:2] == SINGLE_OBJECT_MAGIC == b"\xc3\x01"
    assert data[2:10] == spec_fingerprint64(rt.current.canonical.encode()).to_bytes(8, "little")
    assert data[10:] == fastavro_bytes(rt.parsed, sample.to_avro())


def test_confluent_header_is_zero_and_big_endian_id() -> None:
    registry = InMemorySchemaRegistry(first_id=0x01020304)
    codec = AvroCodec("confluent", registry)
    data = codec.encode_model(SAMPLES[0])
    assert data[:5] == CONFLUENT_MAGIC + b"\x01\x02\x03\x04"
    assert registry.subjects() == {"io.agentstream.v1.ToolCall": [0x01020304]}
    assert json.loads(registry.get(0x01020304)) == RECORD_TYPES["ToolCall"].schema
    assert data[5:] == encode_model(SAMPLES[0])[10:]


# -- round trips ----------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_round_trip_through_both_framings(sample: Record) -> None:
    confluent = AvroCodec("confluent", InMemorySchemaRegistry())
    for data in (encode_model(sample), confluent.encode_model(sample)):
        # one decoder reads both framings
        assert confluent.decode_model(data) == sample
        assert confluent.decode_model(data, type(sample)) == sample
        name, record = confluent.decode_dict(data)
        assert name == sample.avro_name
        # arrays decode as lists (the models hold tuples)
        expected = {k: list(v) if isinstance(v, tuple) else v for k, v in sample.to_avro().items()}
        assert record == expected
    assert decode_model(encode_model(sample)) == sample


def test_decoded_dict_holds_plain_values() -> None:
    _, record = decode_dict(encode_model(SAMPLES[1]))
    assert type(record["event_id"]) is str
    assert record["event_time"] == T0
    assert record["event_time"].tzinfo is not None
    assert record["status"] == "ERROR"
    assert type(record["status"]) is str
    assert record["params"] == SAMPLES[1].to_avro()["params"]


def test_encode_dict_matches_encode_model_and_fills_defaults() -> None:
    sample = SAMPLES[0]
    assert encode_dict("ToolCall", sample.to_avro()) == encode_model(sample)
    assert encode_dict("io.agentstream.v1.ToolCall", sample.to_avro()) == encode_model(sample)
    minimal = {
        key: value
        for key, value in sample.to_avro().items()
        if key in ("event_id", "event_time", "tool", "status", "latency_ms", *CONTEXT)
    }
    assert decode_model(encode_dict("ToolCall", minimal)) == sample


def test_compiled_writer_matches_fastavro_on_random_records() -> None:
    rng = random.Random(7)
    alphabet = 'aé✓ "\\{}x'
    for sample in SAMPLES:
        rt = RECORD_TYPES[sample.avro_name]
        write = compile_writer(rt.parsed)
        assert write is not None
        free_text = {
            f["name"]
            for f in rt.schema["fields"]
            if f["type"] == "string" or f["type"] == ["null", "string"]
        }
        for _ in range(50):
            datum = dict(sample.to_avro())
            for key, value in datum.items():
                if isinstance(value, str) and key in free_text:
                    size = rng.choice([0, 1, 63, 64, 1023, 1024, 5000])
                    datum[key] = "".join(rng.choice(alphabet) for _ in range(size))
                elif type(value) is int:
                    datum[key] = rng.choice([0, 1, -1, 63, -64, 64, 2**31 - 1, -(2**31)])
                elif type(value) is float:
                    datum[key] = rng.choice([0.0, -1.5, 1e300, 3.25])
            assert write(datum) == fastavro_bytes(rt.parsed, datum), sample.avro_name


def test_uvarint_matches_the_spec_zigzag() -> None:
    values = [0, 1, -1, 63, -64, 64, 8191, 8192, 2**31 - 1, -(2**31), 2**49, 2**56, 2**62]
    values += [-(2**63), 2**63 - 1, 1_750_000_000_000_000, -1_750_000_000_000_000]
    for n in values:
        assert uvarint((n << 1) ^ (n >> 63)) == spec_zigzag_varint(n), n


def test_compiled_writer_handles_nested_records_and_defaults() -> None:
    schema = parse(
        {
            "type": "record",
            "name": "Outer",
            "fields": [
                {
                    "name": "inner",
                    "type": {
                        "type": "record",
                        "name": "Inner",
                        "fields": [
                            {"name": "a", "type": "long"},
                            {"name": "b", "type": "string", "default": "dflt"},
                            {"name": "raw", "type": "bytes", "default": "\u00ff"},
                        ],
                    },
                },
                {"name": "items", "type": {"type": "array", "items": "Inner"}},
                {"name": "opt", "type": ["null", "Inner"], "default": None},
                {"name": "f", "type": "float"},
                {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
            ],
        }
    )
    write = compile_writer(schema)
    assert write is not None
    datum = {
        "inner": {"a": -5},
        "items": [{"a": 1, "b": "x", "raw": b"\x00"}, {"a": 2}],
        "opt": {"a": 3},
        "f": 0.5,
        "fx": b"ab",
    }
    expected = {
        **datum,
        "inner": {"a": -5, "b": "dflt", "raw": b"\xff"},
        "items": [{"a": 1, "b": "x", "raw": b"\x00"}, {"a": 2, "b": "dflt", "raw": b"\xff"}],
        "opt": {"a": 3, "b": "dflt", "raw": b"\xff"},
    }
    assert write(datum) == fastavro_bytes(schema, expected)
    assert write({**datum, "opt": None, "items": []}) == fastavro_bytes(
        schema, {**expected, "opt": None, "items": []}
    )


def test_unsupported_schema_falls_back_to_fastavro() -> None:
    schema = parse(
        {
            "type": "record",
            "name": "Odd",
            "fields": [
                {"name": "choice", "type": ["int", "string", "null"]},
                {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            ],
        }
    )
    assert compile_writer(schema) is None
    datum = {"choice": "x", "day": 20000}
    assert make_writer(schema, b"\xaa")(datum) == b"\xaa" + fastavro_bytes(schema, datum)


# -- failures are typed, never garbage ---------------------------------------------


def test_every_truncation_is_a_codec_error() -> None:
    for sample in SAMPLES:
        data = encode_model(sample)
        for size in range(len(data)):
            with pytest.raises(CodecError):
                decode(data[:size])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty message"),
        (b"\x7fabcdefghij", "unknown framing: first byte 0x7f"),
        (b"\xc3\x02" + bytes(8) + b"\x00", "bad single-object marker"),
        (b"\xc3\x01" + bytes(8) + b"\x00", "unknown writer schema: fingerprint 0000000000000000"),
        (b"\xc3\x01\x00", "truncated single-object header"),
        (b"\x00\x00\x01", "truncated Confluent header"),
        (b"\x00\x00\x00\x00\x07\x00", "no registry"),
    ],
)
def test_bad_framing_is_a_codec_error(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(data)


def test_trailing_bytes_and_unknown_ids_are_codec_errors() -> None:
    with pytest.raises(CodecError, match="1 trailing bytes after a ToolCall"):
        decode(encode_model(SAMPLES[0]) + b"\x00")
    codec = AvroCodec("confluent", InMemorySchemaRegistry())
    with pytest.raises(CodecError, match="schema id 99 is not registered"):
        codec.decode(b"\x00\x00\x00\x00\x63\x00")


def test_decode_model_checks_the_expected_record() -> None:
    data = encode_model(SAMPLES[0])
    with pytest.raises(CodecError, match="expected a ModelCall, got a ToolCall"):
        decode_model(data, ModelCall)


def test_contract_breaking_bytes_decode_but_fail_validation() -> None:
    datum = {**SAMPLES[0].to_avro(), "latency_ms": -3.0}
    data = encode_dict("ToolCall", datum)  # Avro-valid, contract-invalid
    assert decode_dict(data)[1]["latency_ms"] == -3.0
    with pytest.raises(EventValidationError, match=r"ToolCall\.latency_ms"):
        decode_model(data)
    with pytest.raises(EventValidationError, match=r"ToolCall\.latency_ms"):
        encode_dict("ToolCall", datum, validate=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latency_ms": "fast"}, "ToolCall.latency_ms: cannot encode 'fast'"),
        ({"tool": None}, "ToolCall.tool: cannot encode None"),
        ({"status": "FINE"}, "ToolCall.status: cannot encode 'FINE'"),
        ({"attempt": 2**31}, "ToolCall.attempt: .*does not fit in an Avro int"),
        ({"event_id": "nope"}, "ToolCall.event_id: .*is not a UUID"),
        ({"event_time": datetime(2025, 1, 1)}, "ToolCall.event_time: .*naive datetime"),
        ({"fallback_used": "yes"}, "ToolCall.fallback_used"),
        ({"tool": ...}, "ToolCall.tool: missing"),
    ],
)
def test_encode_dict_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    datum = {**SAMPLES[0].to_avro(), **change}
    datum = {key: value for key, value in datum.items() if value is not ...}
    with pytest.raises(CodecError, match=message):
        encode_dict("ToolCall", datum)


def test_unknown_record_and_framing() -> None:
    with pytest.raises(CodecError, match="unknown record 'Nope'"):
        encode_dict("Nope", {})
    with pytest.raises(CodecError, match="needs a schema registry"):
        AvroCodec("confluent")
    with pytest.raises(CodecError, match="unknown framing"):
        AvroCodec("json")  # type: ignore[arg-type]


# -- schema resolution: older writers -----------------------------------------------


def older_tool_call_schema() -> dict[str, Any]:
    """ToolCall as an older version: without result_summary and fallback_used."""
    schema: dict[str, Any] = json.loads(json.dumps(RECORD_TYPES["ToolCall"].schema))
    schema["fields"] = [
        field
        for field in schema["fields"]
        if field["name"] not in ("result_summary", "fallback_used")
    ]
    return schema


def test_older_writer_by_fingerprint_resolves_to_current(monkeypatch: pytest.MonkeyPatch) -> None:
    rt = RECORD_TYPES["ToolCall"]
    old = SchemaVersion.from_schema("ToolCall", 0, older_tool_call_schema())
    assert old.fingerprint != rt.fingerprint
    datum = SAMPLES[1].to_avro()
    data = SINGLE_OBJECT_MAGIC + old.fingerprint + fastavro_bytes(old.parsed, datum)
    with pytest.raises(CodecError, match="unknown writer schema"):
        decode(data)  # not in the history: refused
    monkeypatch.setitem(catalog._BY_FINGERPRINT, old.fingerprint, (rt, old))
    decoded = decode(data)
    assert decoded.writer_version == 0
    assert decoded.record["result_summary"] is None  # reader default
    assert decoded.record["fallback_used"] is False  # reader default
    assert decoded.record["params"] == datum["params"]
    expected = SAMPLES[1].model_copy(update={"result_summary": None, "fallback_used": False})
    assert decode_model(data) == expected


def test_older_writer_by_registry_id_resolves_to_current() -> None:
    registry = InMemorySchemaRegistry()
    old_schema = older_tool_call_schema()
    schema_id = registry.register("agent.tool_calls-value", json.dumps(old_schema))
    datum = SAMPLES[1].to_avro()
    payload = fastavro_bytes(parse(old_schema), datum)
    data = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + payload
    decoded = AvroCodec("confluent", registry).decode(data)
    assert decoded.schema_id == schema_id
    assert decoded.writer_version is None
    assert decoded.record["result_summary"] is None
    assert decoded.record["tool"] == "pay"


def test_registry_schema_of_an_unknown_record_is_refused() -> None:
    registry = InMemorySchemaRegistry()
    other = {"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]}
    schema_id = registry.register("other", json.dumps(other))
    data = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + b"\x02"
    with pytest.raises(CodecError, match="unknown record 'Other'"):
        AvroCodec("confluent", registry).decode(data)


def test_register_all_registers_every_record_once() -> None:
    registry = InMemorySchemaRegistry()
    codec = AvroCodec("confluent", registry, subject_for=lambda fullname: f"{fullname}-value")
    ids = codec.register_all()
    assert sorted(ids) == sorted(RECORD_TYPES)
    assert len(set(ids.values())) == len(ids)
    assert codec.register_all() == ids
    assert sorted(registry.subjects()) == sorted(
        f"{rt.fullname}-value" for rt in RECORD_TYPES.values()
    )
    assert AvroCodec().register_all() == {}


@pytest.mark.parametrize("name", ["ToolCall", "ModelCall", "StateTransition", "ReviewDecision"])
def test_v1_data_without_redactions_still_reads(name: str) -> None:
    """Events written before ``redactions`` existed (v1) read with an empty map."""
    rt = RECORD_TYPES[name]
    v1 = next(v for v in rt.history if v.version == 1)
    assert "redactions" not in {f["name"] for f in v1.schema["fields"]}
    sample = next(s for s in SAMPLES if type(s).avro_name == name)
    datum = {k: v for k, v in sample.to_avro().items() if k != "redactions"}
    data = SINGLE_OBJECT_MAGIC + v1.fingerprint + fastavro_bytes(v1.parsed, datum)
    decoded = decode(data)
    assert decoded.writer_version == 1
    assert decoded.record["redactions"] == {}
    assert decode_model(data) == sample.model_copy(update={"redactions": {}})


def test_redaction_counts_round_trip() -> None:
    sample = next(s for s in SAMPLES if isinstance(s, ToolCall))
    counted = sample.model_copy(update={"redactions": {"email": 2, "card": 1}})
    decoded = decode_model(encode_model(counted), ToolCall)
    assert decoded == counted
    assert decoded.redactions == {"email": 2, "card": 1}
