"""The spool's on-disk format: records, frames, and a reader that survives corruption.

A segment starts with an 8-byte magic. Version 2 (``AGSPOOL2``, written now)
frames each record as::

    mark "AGF\\xa7" (4 bytes) | length (u32 BE) | crc32(length bytes + payload) (u32 BE) | payload

Version 1 (``AGSPOOL1``, read only) had no mark and a CRC of the payload alone.

:func:`scan_frames` reads every frame it can: where a frame is damaged (a
flipped byte, a torn write, garbage) it records the *bad range* and
resynchronises on the next offset where a whole valid frame starts (mark,
plausible length, CRC, decodable payload). So one bad byte costs one record,
not the rest of the segment.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FRAME_MARK",
    "MAGIC",
    "MAGIC_V1",
    "BadRange",
    "Scan",
    "SpoolRecord",
    "encode_frames",
    "read_frames",
    "scan_frames",
]

MAGIC: Final = b"AGSPOOL2"
MAGIC_V1: Final = b"AGSPOOL1"
FRAME_MARK: Final = b"AGF\xa7"
_HEADER = struct.Struct(">4sII")
_HEADER_V1 = struct.Struct(">II")
_LENGTH = struct.Struct(">I")
_FIELD = struct.Struct(">I")
_NO_KEY: Final = 0xFFFFFFFF
#: a frame longer than this is corruption, not a record
MAX_FRAME: Final = 256 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One Kafka message waiting to be sent."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def encode(self) -> bytes:
        """The payload of this record's frame."""
        topic = self.topic.encode()
        parts = [_FIELD.pack(len(topic)), topic]
        if self.key is None:
            parts.append(_FIELD.pack(_NO_KEY))
        else:
            parts += [_FIELD.pack(len(self.key)), self.key]
        parts += [_FIELD.pack(len(self.value)), self.value, _FIELD.pack(len(self.headers))]
        for name, value in self.headers:
            raw = name.encode()
            parts += [_FIELD.pack(len(raw)), raw, _FIELD.pack(len(value)), value]
        return b"".join(parts)

    @classmethod
    def decode(cls, payload: bytes | memoryview) -> SpoolRecord:
        """The record of a frame's payload; ``ValueError`` when it is malformed."""
        view = memoryview(payload)
        pos = 0

        def take(nullable: bool = False) -> bytes | None:
            nonlocal pos
            (size,) = _FIELD.unpack_from(view, pos)
            pos += _FIELD.size
            if size == _NO_KEY and nullable:
                return None
            if pos + size > len(view):
                raise ValueError("field runs past the end of the record")
            chunk = bytes(view[pos : pos + size])
            pos += size
            return chunk

        try:
            topic = (take() or b"").decode()
            key = take(nullable=True)
            value = take() or b""
            (n_headers,) = _FIELD.unpack_from(view, pos)
            pos += _FIELD.size
            headers = []
            for _ in range(n_headers):
                name = (take() or b"").decode()
                headers.append((name, take() or b""))
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed spool record: {exc}") from exc
        if pos != len(view):
            raise ValueError("trailing bytes in a spool record")
        return cls(topic=topic, key=key, value=value, headers=tuple(headers))


def frame(payload: bytes) -> bytes:
    """One version-2 frame around ``payload``."""
    length = _LENGTH.pack(len(payload))
    return FRAME_MARK + length + _LENGTH.pack(zlib.crc32(payload, zlib.crc32(length))) + payload


def encode_frames(records: Sequence[SpoolRecord]) -> bytes:
    """``records`` framed (version 2) and concatenated."""
    return b"".join([frame(record.encode()) for record in records])


@dataclass(frozen=True, slots=True)
class BadRange:
    """Bytes of a segment that hold no readable frame: ``[offset, offset + size)``."""

    offset: int
    size: int
    #: frames that were (at least partly) in these bytes: frame marks seen, at least 1
    frames: int


@dataclass(frozen=True, slots=True)
class Scan:
    """What :func:`scan_frames` found in a segment's bytes."""

    records: list[SpoolRecord]
    bad: list[BadRange]

    @property
    def damaged(self) -> bool:
        """Some bytes could not be read (a torn tail or corruption)."""
        return bool(self.bad)

    @property
    def bad_bytes(self) -> int:
        return sum(r.size for r in self.bad)

    @property
    def bad_frames(self) -> int:
        return sum(r.frames for r in self.bad)


def _frame_at(view: memoryview, pos: int, v2: bool) -> tuple[SpoolRecord, int] | None:
    """The record of a valid frame starting at ``pos`` and the offset after it, else None."""
    end = len(view)
    header = _HEADER if v2 else _HEADER_V1
    if pos + header.size > end:
        return None
    if v2:
        mark, size, crc = _HEADER.unpack_from(view, pos)
        if mark != FRAME_MARK:
            return None
    else:
        size, crc = _HEADER_V1.unpack_from(view, pos)
    start = pos + header.size
    if size > MAX_FRAME or start + size > end:
        return None
    payload = view[start : start + size]
    seed = zlib.crc32(view[pos + 4 : pos + 8]) if v2 else 0
    if zlib.crc32(payload, seed) != crc:
        return None
    try:
        return SpoolRecord.decode(payload), start + size
    except ValueError:
        return None


def _resync(data: bytes, view: memoryview, pos: int, v2: bool) -> int:
    """The first offset after ``pos`` where a valid frame starts, or the end."""
    end = len(data)
    candidate = pos + 1
    while candidate < end:
        if v2:
            candidate = data.find(FRAME_MARK, candidate)
            if candidate < 0:
                return end
        if _frame_at(view, candidate, v2) is not None:
            return candidate
        candidate += 1
    return end


def scan_frames(data: bytes) -> Scan:
    """Every readable record of a segment's bytes, and the ranges that are not readable."""
    if not data:
        return Scan([], [])
    view = memoryview(data)
    records: list[SpoolRecord] = []
    bad: list[BadRange] = []
    v2 = data[: len(MAGIC)] != MAGIC_V1
    pos = len(MAGIC)
    if data[: len(MAGIC)] not in (MAGIC, MAGIC_V1):
        # a damaged header: look for (version 2) frames from the first byte on
        pos = 0 if _frame_at(view, 0, True) is not None else _resync(data, view, 0, True)
        if pos:
            bad.append(BadRange(0, pos, data.count(FRAME_MARK, 0, pos)))
    end = len(data)
    while pos < end:
        found = _frame_at(view, pos, v2)
        if found is not None:
            record, pos = found
            records.append(record)
            continue
        nxt = _resync(data, view, pos, v2)
        frames = max(1, data.count(FRAME_MARK, pos, nxt)) if v2 else 1
        bad.append(BadRange(pos, nxt - pos, frames))
        pos = nxt
    return Scan(records, bad)


def read_frames(data: bytes) -> tuple[list[SpoolRecord], bool]:
    """The readable records of a segment's bytes and whether some bytes were not readable."""
    scan = scan_frames(data)
    return scan.records, scan.damaged
