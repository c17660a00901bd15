"""The compiled Avro reader reads what fastavro reads, and refuses what fastavro refuses.

Ground truth is ``fastavro.schemaless_reader`` on the same bytes and schema (the
reader under test shares no code with it).
"""

from __future__ import annotations

import contextlib
import io
import random
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from agentstream.schemas import RECORD_TYPES, SINGLE_OBJECT_MAGIC, CodecError, decode
from agentstream.schemas._codec import _single_object_reader
from agentstream.schemas._reader import Reader, compile_reader, decoding_schema
from tests.schemas.test_schema_codec import SAMPLES, fastavro_bytes, parse


def fastavro_read(schema: dict[str, Any], data: bytes) -> tuple[Any, int]:
    buffer = io.BytesIO(data)
    value = fastavro.schemaless_reader(buffer, schema, None)
    return value, buffer.tell()


def compiled(schema: dict[str, Any]) -> Reader:
    reader = compile_reader(schema)
    assert reader is not None
    return reader


def _vary(datum: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``datum`` with its strings, numbers, times and maps changed at random (same types)."""
    alphabet = 'aé✓ "\\{}x\U0001f600'
    out = dict(datum)
    for key, value in datum.items():
        if isinstance(value, str) and key not in ("event_id",) and len(value) > 0:
            if not value.isupper():  # enum symbols stay symbols
                size = rng.choice([1, 2, 63, 64, 65, 1023, 1024, 5000])
                out[key] = "".join(rng.choice(alphabet) for _ in range(size))
        elif type(value) is int:
            out[key] = rng.choice([0, 1, 63, 64, 8191, 8192, 2**31 - 1])
        elif type(value) is float:
            out[key] = rng.choice([0.0, -1.5, 1e300, 3.25, 5e-324, float("inf")])
        elif type(value) is bytes:
            out[key] = rng.randbytes(rng.choice([0, 1, 64, 200]))
        elif isinstance(value, datetime):
            out[key] = datetime.fromtimestamp(rng.uniform(-1e9, 4e9), UTC)
        elif isinstance(value, dict):
            out[key] = {f"k{i}": rng.choice([0, 1, 2**50]) for i in range(rng.randint(0, 70))}
    return out


def test_every_record_reads_as_fastavro_reads_it() -> None:
    rng = random.Random(11)
    seen = set()
    for sample in SAMPLES:
        schema = decoding_schema(RECORD_TYPES[sample.avro_name].current)
        read = compiled(schema)
        seen.add(sample.avro_name)
        for n in range(40):
            datum = sample.to_avro() if n == 0 else _vary(sample.to_avro(), rng)
            data = fastavro_bytes(schema, datum)
            expected = fastavro_read(schema, data)
            assert read(data, 0) == expected, sample.avro_name
            assert read(b"\xaa\xbb" + data, 2) == (expected[0], expected[1] + 2)
    assert seen == set(RECORD_TYPES)  # every record type was read


NESTED = {
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
                    {"name": "b", "type": "string"},
                    {"name": "raw", "type": "bytes"},
                ],
            },
        },
        {"name": "items", "type": {"type": "array", "items": "Inner"}},
        {"name": "opt", "type": ["null", "Inner"]},
        {"name": "three", "type": ["null", "string", "double"]},
        {"name": "f", "type": "float"},
        {"name": "i", "type": "int"},
        {"name": "ok", "type": "boolean"},
        {"name": "fx", "type": {"type": "fixed", "name": "Two", "size": 2}},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G", "B"]}},
        {"name": "again", "type": "Color"},
        {"name": "lists", "type": {"type": "map", "values": {"type": "array", "items": "int"}}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    ],
}


def test_nested_records_arrays_maps_unions_read_as_fastavro_reads_them() -> None:
    schema = parse(NESTED)
    read = compiled(schema)
    rng = random.Random(5)
    for _ in range(200):
        inner = [
            {"a": rng.randint(-(2**63), 2**63 - 1), "b": "é" * rng.randint(0, 70), "raw": b"x"}
            for _ in range(rng.randint(0, 3))
        ]
        datum = {
            "inner": {"a": -5, "b": "", "raw": rng.randbytes(rng.randint(0, 300))},
            "items": inner,
            "opt": rng.choice([None, {"a": 3, "b": "z", "raw": b""}]),
            "three": rng.choice([None, "s", 2.5]),
            "f": rng.choice([0.5, 1e38, -3.0, 0.1]),
            "i": rng.randint(-(2**31), 2**31 - 1),
            "ok": rng.random() < 0.5,
            "fx": rng.randbytes(2),
            "color": rng.choice("RGB"),
            "again": rng.choice("RGB"),
            "lists": {str(k): list(range(k)) for k in range(rng.randint(0, 4))},
            "at": datetime.fromtimestamp(rng.uniform(-1e10, 1e10), UTC),
        }
        data = fastavro_bytes(schema, datum)
        assert read(data, 0) == fastavro_read(schema, data)


def test_blocks_with_a_byte_size_read_as_fastavro_reads_them() -> None:
    # a writer may give a block's byte size (a negative count): the count is its absolute value
    schema = parse({"type": "record", "name": "M", "fields": [NESTED["fields"][10]]})
    # a block of -1 items (6 bytes): "a" -> [4]; a block of -2 items: "b" -> [], "c" -> []; end
    data = bytes([0x01, 0x0C, 0x02, ord("a"), 0x02, 0x08, 0x00])
    data += bytes([0x03, 0x08, 0x02, ord("b"), 0x00, 0x02, ord("c"), 0x00, 0x00])
    assert fastavro_read(schema, data) == ({"lists": {"a": [4], "b": [], "c": []}}, len(data))
    assert compiled(schema)(data, 0) == fastavro_read(schema, data)


def test_corrupt_bytes_never_read_differently() -> None:
    """Whatever the compiled reader returns, fastavro returns too; what fastavro refuses,
    the compiled reader refuses (it may refuse more: a negative index, an overlong varint)."""
    rng = random.Random(3)
    refused = 0
    for sample in SAMPLES:
        schema = decoding_schema(RECORD_TYPES[sample.avro_name].current)
        read = compiled(schema)
        good = fastavro_bytes(schema, sample.to_avro())
        for _ in range(150):
            data = bytearray(good)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.3:
                data = data[: rng.randrange(len(data))]
            body = bytes(data)
            try:
                expected: Any = fastavro_read(schema, body)
            except Exception:
                expected = None
            try:
                got: Any = read(body, 0)
            except (EOFError, IndexError, ValueError, OverflowError, UnicodeDecodeError):
                got = None
                refused += 1
            if got is not None:
                assert got == expected, sample.avro_name
    assert refused > 0  # the corruption did reach the error paths


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x01", "negative length -1"),
        (b"\x80" * 11, "longer than 10 bytes"),
    ],
)
def test_garbage_fastavro_would_read_is_refused(body: bytes, message: str) -> None:
    read = compiled(
        parse({"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]})
    )
    with pytest.raises(ValueError, match=message):
        read(body, 0)


def test_negative_enum_and_union_indexes_are_refused() -> None:
    schema = parse({"type": "record", "name": "E", "fields": NESTED["fields"][8:9]})
    assert fastavro_read(schema, b"\x01")[0] == {"color": "B"}  # fastavro: symbols[-1]
    with pytest.raises(ValueError, match="enum index -1"):
        compiled(schema)(b"\x01", 0)
    schema = parse({"type": "record", "name": "U", "fields": NESTED["fields"][3:4]})
    with pytest.raises(ValueError, match="union index 3"):
        compiled(schema)(b"\x06", 0)


def test_unsupported_schemas_are_left_to_fastavro() -> None:
    for logical in (
        {"type": "int", "logicalType": "date"},
        {"type": "string", "logicalType": "uuid"},
    ):
        schema = parse({"type": "record", "name": "D", "fields": [{"name": "d", "type": logical}]})
        assert compile_reader(schema) is None


def test_the_codec_compiles_current_schemas_and_resolves_old_ones_with_fastavro() -> None:
    for rt in RECORD_TYPES.values():
        for version in (*rt.history, rt.current):
            entry = _single_object_reader(version.fingerprint)
            assert entry is not None
            if version.fingerprint == rt.current.fingerprint:
                assert entry.compiled is not None, rt.name
            else:
                assert entry.compiled is None, rt.name
                assert entry.reader is not None, rt.name


def test_the_codec_reports_a_short_record_and_bad_text() -> None:
    rt = RECORD_TYPES["ToolCall"]
    data = SINGLE_OBJECT_MAGIC + rt.fingerprint + fastavro_bytes(rt.parsed, SAMPLES[0].to_avro())
    with pytest.raises(CodecError, match="cannot decode ToolCall: EOFError"):
        decode(data[:20])
    not_utf8 = SINGLE_OBJECT_MAGIC + rt.fingerprint + b"\x04\xff\xfe"  # event_id: 2 bytes
    with pytest.raises(CodecError, match="cannot decode ToolCall: UnicodeDecodeError"):
        decode(not_utf8)


# fields set to values Avro can carry but the contract refuses (one per kind of rule)
CONTRACT_BREAKS: list[dict[str, Any]] = [
    {"event_id": "not-a-uuid"},
    {"tenant_id": ""},
    {"run_id": "r" * 257},
    {"trace_id": ""},
    {"latency_ms": -3.0},
    {"latency_ms": float("nan")},
    {"timeout_ms": 0.0},
    {"attempt": 0},
    {"params": "{not json"},
    {"params": ""},
    {"result_summary": "x" * (16 * 1024 + 1)},
    {"redactions": {"email": -1}},
    {"status": "SUCCESS", "error_class": "TIMEOUT"},  # the model's own rule
    {"status": "ERROR", "error_class": "NONE"},
    {"event_time": datetime(1, 1, 1, tzinfo=UTC)},  # far in the past: still a valid datetime
]


def avro_only(change: dict[str, Any]) -> bytes:
    """Single-object bytes of the second sample with ``change``, written by fastavro
    (Avro's rules only: our own writer refuses a bad UUID)."""
    current = RECORD_TYPES["ToolCall"].current
    body = fastavro_bytes(decoding_schema(current), {**SAMPLES[1].to_avro(), **change})
    return SINGLE_OBJECT_MAGIC + current.fingerprint + body


@pytest.mark.parametrize("change", CONTRACT_BREAKS, ids=lambda c: ",".join(c))
def test_decode_model_refuses_what_model_validate_refuses(change: dict[str, Any]) -> None:
    """decode_model validates with the model's own validator: same verdict, same errors."""
    from agentstream.schemas import EventValidationError, ToolCall, decode_model

    data = avro_only(change)
    decoded = decode(data).record
    try:
        expected: Any = ToolCall.model_validate(decoded)
    except EventValidationError as exc:
        expected = exc
    if not isinstance(expected, EventValidationError):
        assert decode_model(data, ToolCall) == expected  # a valid record stays valid
        return
    with pytest.raises(EventValidationError) as caught:
        decode_model(data, ToolCall)

    def brief(
        exc: EventValidationError,
    ) -> list[tuple[Any, ...]]:  # nan != nan, ctx holds exceptions
        return [(e["type"], e["loc"], e["msg"], repr(e["input"])) for e in exc.errors()]

    assert brief(caught.value) == brief(expected)
    assert caught.value.fields == expected.fields
    assert str(caught.value) == str(expected)
    assert caught.value.fields  # names the field


def test_decode_model_refuses_each_break() -> None:
    """Every break above but the old event time is refused (the list tests refusals)."""
    from agentstream.schemas import EventValidationError, ToolCall, decode_model

    refused = 0
    for change in CONTRACT_BREAKS:
        data = avro_only(change)
        with contextlib.suppress(EventValidationError):
            decode_model(data, ToolCall)
            continue
        refused += 1
    assert refused == len(CONTRACT_BREAKS) - 1
