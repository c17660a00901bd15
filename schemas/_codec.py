"""The Avro codec: two framings, one decoder.

* **single-object** (default, no registry): ``C3 01`` + the 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form + the
  Avro binary body (the Avro specification's single-object encoding);
* **Confluent**: ``00`` + the 4-byte big-endian schema id of a schema registry +
  the body.

The first byte tells the decoder which framing it reads. The writer schema is
found by fingerprint (current schema or any version in ``schemas/history``) or
by registry id, and resolved to the current (reader) schema with fastavro's
schema resolution, so data written with an older version decodes into the
current model. Anything undecodable raises :class:`CodecError`, never garbage.

Encoding uses a writer compiled per schema (:mod:`schemas._writer`), byte for byte
what fastavro writes; decoding bytes of the current schema uses a reader compiled
per schema (:mod:`schemas._reader`), value for value what fastavro reads, and
``fastavro.schemaless_reader`` for every other writer version (schema resolution).
Decoded records hold UUIDs as text (as the models do) and timestamps as UTC datetimes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from io import BytesIO
from typing import Any, Literal, NamedTuple, TypeVar, overload

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from agentstream.schemas._base import Record, contract_error
from agentstream.schemas._catalog import (
    RECORD_TYPES,
    RecordType,
    SchemaVersion,
    parse_record_schema,
    record_type,
    version_by_fingerprint,
)
from agentstream.schemas._reader import Reader, compiled_reader, decoding_schema, strip_uuid
from agentstream.schemas._registry import SchemaRegistry
from agentstream.schemas._writer import NO_DEFAULT, compile_field_encoders, compile_writer
from agentstream.schemas.errors import CodecError

__all__ = [
    "CONFLUENT_MAGIC",
    "DEFAULT_CODEC",
    "SINGLE_OBJECT_MAGIC",
    "AvroCodec",
    "Decoded",
    "Framing",
    "decode",
    "decode_dict",
    "decode_model",
    "encode_dict",
    "encode_model",
    "make_writer",
    "record_name_subject",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
Framing = Literal["single_object", "confluent"]
Writer = Callable[[Mapping[str, Any]], bytes]
M = TypeVar("M", bound=Record)


class Decoded(NamedTuple):
    """A decoded message: its record type, the record, and where its writer schema came from."""

    record_type: RecordType
    record: dict[str, Any]
    #: version of the writer schema in the history (None: known only to the registry)
    writer_version: int | None
    #: Confluent schema id (None for single-object framing)
    schema_id: int | None


def record_name_subject(fullname: str) -> str:
    """Confluent RecordNameStrategy: the subject is the record's full name."""
    return fullname


def make_writer(parsed: Mapping[str, Any], prefix: bytes = b"") -> Writer:
    """A writer for ``parsed``: compiled when possible, else fastavro's (same bytes)."""
    compiled = compile_writer(parsed, prefix)
    if compiled is not None:
        return compiled

    schema = dict(parsed)

    def write(datum: Mapping[str, Any]) -> bytes:
        buffer = BytesIO()
        buffer.write(prefix)
        schemaless_writer(buffer, schema, datum)
        return buffer.getvalue()

    return write


class _Reader(NamedTuple):
    record_type: RecordType
    writer: dict[str, Any]
    reader: dict[str, Any] | None
    writer_version: int | None
    #: the compiled reader (writer = reader schema only; ``None``: fastavro reads)
    compiled: Reader | None = None


#: the reader of each known single-object fingerprint (schema versions never change)
_single_object_readers: dict[bytes, _Reader] = {}


def _single_object_reader(fingerprint: bytes) -> _Reader | None:
    entry = _single_object_readers.get(fingerprint)
    if entry is None:
        found = version_by_fingerprint(fingerprint)
        if found is None:
            return None
        entry = _single_object_readers[fingerprint] = _reader_for(*found)
    return entry


def _reader_for(rt: RecordType, version: SchemaVersion) -> _Reader:
    same = version.fingerprint == rt.current.fingerprint
    if same:
        return _Reader(
            rt, decoding_schema(version), None, version.version, compiled_reader(version)
        )
    return _Reader(rt, decoding_schema(version), decoding_schema(rt.current), version.version)


class AvroCodec:
    """Encodes contract records to framed Avro bytes and decodes them back.

    ``framing`` picks what :meth:`encode_model`/:meth:`encode_dict` write; the
    decoder reads both (Confluent framing needs ``registry``). In Confluent
    framing each record's schema is registered on first use (or all at once with
    :meth:`register_all`) under ``subject_for(fullname)``.
    """

    def __init__(
        self,
        framing: Framing = "single_object",
        registry: SchemaRegistry | None = None,
        subject_for: Callable[[str], str] = record_name_subject,
    ) -> None:
        if framing not in ("single_object", "confluent"):
            raise CodecError(f"unknown framing {framing!r}; use 'single_object' or 'confluent'")
        if framing == "confluent" and registry is None:
            raise CodecError("the Confluent framing needs a schema registry")
        self.framing: Framing = framing
        self.registry = registry
        self._subject_for = subject_for
        self._lock = threading.Lock()
        self._writers: dict[object, tuple[RecordType, Writer]] = {}
        self._by_id: dict[int, _Reader] = {}
        self._schema_ids: dict[str, int] = {}

    # -- encoding -------------------------------------------------------------

    def encode_model(self, model: Record) -> bytes:
        """Framed Avro bytes of a (validated) model."""
        entry = self._writers.get(type(model))
        if entry is None:
            entry = self._prepare(record_type(model))
        datum = model.__dict__
        try:
            return entry[1](datum)
        except Exception as exc:
            raise _encode_error(entry[0], datum, exc) from exc

    def encode_dict(
        self, record_name: str, record: Mapping[str, Any], *, validate: bool = False
    ) -> bytes:
        """Framed Avro bytes of ``record`` (field name → value) as ``record_name``.

        Without ``validate`` only what Avro itself needs is checked (types, int/long
        ranges, UUID text, timezone-aware datetimes); missing fields with a
        default take it. ``validate=True`` builds the model first (all contract
        rules; raises :class:`EventValidationError`).
        """
        entry = self._writers.get(record_name)
        if entry is None:
            entry = self._prepare(record_type(record_name))
        if validate:
            return self.encode_model(entry[0].model.model_validate(record))
        try:
            return entry[1](record)
        except Exception as exc:
            raise _encode_error(entry[0], record, exc) from exc

    def register_all(self) -> dict[str, int]:
        """Confluent framing: register every record now; returns name → schema id."""
        if self.framing != "confluent":
            return {}
        ids: dict[str, int] = {}
        for rt in RECORD_TYPES.values():
            self._prepare(rt)
            ids[rt.name] = self._schema_ids[rt.name]
        return ids

    def _prepare(self, rt: RecordType) -> tuple[RecordType, Writer]:
        with self._lock:
            entry = self._writers.get(rt.model)
            if entry is not None:
                return entry
            if self.framing == "single_object":
                prefix = SINGLE_OBJECT_MAGIC + rt.fingerprint
            else:
                schema_id = self._register(rt)
                prefix = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            entry = (rt, make_writer(rt.parsed, prefix))
            for key in (rt.model, rt.name, rt.fullname):
                self._writers[key] = entry
            return entry

    def _register(self, rt: RecordType) -> int:
        if self.registry is None:  # pragma: no cover - checked in __init__
            raise CodecError("the Confluent framing needs a schema registry")
        schema_id = self.registry.register(self._subject_for(rt.fullname), rt.schema_text)
        if not 0 <= schema_id < 2**31:
            raise CodecError(f"schema id {schema_id} does not fit the Confluent framing")
        self._schema_ids[rt.name] = schema_id
        self._by_id[schema_id] = _reader_for(rt, rt.current)
        return schema_id

    # -- decoding -------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> Decoded:
        """Decode framed bytes of either framing into the current schema's record."""
        entry, record, schema_id = self._read(data)
        return Decoded(entry.record_type, record, entry.writer_version, schema_id)

    def _read(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[_Reader, dict[str, Any], int | None]:
        """:meth:`decode`'s work: the reader used, the record, the Confluent schema id."""
        if type(data) is not bytes:
            data = bytes(data)
        size = len(data)
        if size == 0:
            raise CodecError("empty message: no framing byte")
        first = data[0]
        schema_id: int | None = None
        if first == 0xC3:
            if size < 10:
                raise CodecError(f"truncated single-object header: {size} bytes of 10")
            if data[1] != 0x01:
                raise CodecError(f"bad single-object marker c3 {data[1]:02x} (expected c3 01)")
            found = _single_object_reader(data[2:10])
            if found is None:
                raise CodecError(
                    f"unknown writer schema: fingerprint {data[2:10].hex()} is no version "
                    "of any record (is schemas/history up to date?)"
                )
            entry = found
            offset = 10
        elif first == 0x00:
            if size < 5:
                raise CodecError(f"truncated Confluent header: {size} bytes of 5")
            schema_id = int.from_bytes(data[1:5], "big")
            entry = self._reader_for_id(schema_id)
            offset = 5
        else:
            raise CodecError(
                f"unknown framing: first byte {first:#04x} "
                "(expected 0xc3 for Avro single-object or 0x00 for Confluent)"
            )
        compiled = entry.compiled
        if compiled is not None:
            try:
                record, end = compiled(data, offset)
            except IndexError as exc:  # the compiled reader ran past the end
                name = entry.record_type.name
                raise CodecError(f"cannot decode {name}: EOFError: the record ends early") from exc
            except Exception as exc:
                name = entry.record_type.name
                raise CodecError(f"cannot decode {name}: {type(exc).__name__}: {exc}") from exc
        else:
            record, end = _fastavro_read(entry, data, offset)
        if end != size:
            name = entry.record_type.name
            raise CodecError(f"{size - end} trailing bytes after a {name} record")
        return entry, record, schema_id

    def decode_dict(self, data: bytes | bytearray | memoryview) -> tuple[str, dict[str, Any]]:
        """``(record name, record)`` of framed bytes."""
        decoded = self.decode(data)
        return decoded.record_type.name, decoded.record

    @overload
    def decode_model(self, data: bytes | bytearray | memoryview) -> Record: ...

    @overload
    def decode_model(self, data: bytes | bytearray | memoryview, model: type[M]) -> M: ...

    def decode_model(
        self, data: bytes | bytearray | memoryview, model: type[Record] | None = None
    ) -> Record:
        """The validated model of framed bytes; with ``model``, the bytes must be that record.

        Raises :class:`CodecError` for bytes that do not decode (or are another
        record) and :class:`EventValidationError` for a record that breaks the contract.
        """
        entry, record, _ = self._read(data)
        cls = entry.record_type.model
        if model is not None and cls is not model:
            raise CodecError(f"expected a {model.avro_name}, got a {entry.record_type.name}")
        # what cls.model_validate does, minus two Python frames: this runs once per record read
        try:
            validated: Record = cls.__pydantic_validator__.validate_python(record)
        except ValidationError as exc:
            raise contract_error(cls, exc) from exc
        return validated

    def _reader_for_id(self, schema_id: int) -> _Reader:
        entry = self._by_id.get(schema_id)
        if entry is not None:
            return entry
        if self.registry is None:
            raise CodecError(
                f"Confluent-framed message (schema id {schema_id}) but the codec has no registry"
            )
        text = self.registry.get(schema_id)
        try:
            schema = json.loads(text)
            version = SchemaVersion.from_schema("?", 0, schema)
        except Exception as exc:
            raise CodecError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
        found = version_by_fingerprint(version.fingerprint)
        if found is not None:
            entry = _reader_for(*found)
        else:
            rt = record_type(str(version.parsed.get("name", "")))
            entry = _Reader(
                rt,
                parse_record_schema(strip_uuid(schema)),
                decoding_schema(rt.current),
                None,
            )
        self._by_id[schema_id] = entry
        return entry


def _fastavro_read(entry: _Reader, data: bytes, offset: int) -> tuple[dict[str, Any], int]:
    """fastavro's read of the body at ``offset`` (schema resolution; uncompiled schemas)."""
    buffer = BytesIO(data)
    buffer.seek(offset)
    try:
        record = schemaless_reader(buffer, entry.writer, entry.reader)
    except Exception as exc:
        name = entry.record_type.name
        raise CodecError(f"cannot decode {name}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(record, dict):  # pragma: no cover - record schemas give dicts
        raise CodecError(f"{entry.record_type.name}: decoded {type(record).__name__}, not a record")
    return record, buffer.tell()


def _encode_error(rt: RecordType, datum: Mapping[str, Any], exc: Exception) -> CodecError:
    """A CodecError naming the first field that cannot be encoded."""
    try:
        fields = compile_field_encoders(rt.parsed, rt.parsed.get("__named_schemas", {}))
    except Exception:  # pragma: no cover - only for schemas the compiler rejects
        fields = []
    for name, encoder, default in fields:
        if name not in datum:
            if default is NO_DEFAULT:
                return CodecError(f"{rt.name}.{name}: missing (the field has no default)")
            continue
        try:
            encoder(datum[name])
        except Exception as field_exc:
            return CodecError(f"{rt.name}.{name}: cannot encode {datum[name]!r}: {field_exc}")
    return CodecError(f"{rt.name}: cannot encode: {type(exc).__name__}: {exc}")


#: the process-wide single-object codec behind the module-level functions
DEFAULT_CODEC = AvroCodec()
#: :meth:`AvroCodec.encode_model` of :data:`DEFAULT_CODEC` (single-object framing)
encode_model = DEFAULT_CODEC.encode_model
#: :meth:`AvroCodec.encode_dict` of :data:`DEFAULT_CODEC` (single-object framing)
encode_dict = DEFAULT_CODEC.encode_dict
#: :meth:`AvroCodec.decode` of :data:`DEFAULT_CODEC`
decode = DEFAULT_CODEC.decode
#: :meth:`AvroCodec.decode_dict` of :data:`DEFAULT_CODEC`
decode_dict = DEFAULT_CODEC.decode_dict
#: :meth:`AvroCodec.decode_model` of :data:`DEFAULT_CODEC`
decode_model = DEFAULT_CODEC.decode_model
