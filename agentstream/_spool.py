"""The Emitter's durable spool: events the broker could not take, kept on disk.

Layout: a folder of append-only segment files. Each record is framed as
``length (u32 BE) | crc32 (u32 BE) | payload`` where the payload holds the
topic, key, value and headers of one Kafka message. Writers append to their own
segment (``active-<pid>-<n>.spool``) and ``fsync`` once per batch. Replay claims
a segment by renaming it (``claimed-<pid>-...``), so two processes never
replay the same one; a segment is deleted only after every record in it was
delivered (or spooled again). A crash mid-replay leaves the claimed segment
behind, to be replayed again: duplicates are possible, loss is not, and the
sink deduplicates by ``event_id``.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from agentstream.errors import DeliveryError

__all__ = ["SpoolRecord", "SpoolStats", "Spool"]

_FRAME = struct.Struct(">II")
_FIELD = struct.Struct(">I")
_NO_KEY = 0xFFFFFFFF
_ACTIVE = "active-"
_CLAIMED = "claimed-"
_SUFFIX = ".spool"


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One Kafka message waiting to be sent."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def encode(self) -> bytes:
        parts = [_FIELD.pack(len(self.topic.encode())), self.topic.encode()]
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
    def decode(cls, payload: bytes) -> SpoolRecord:
        view = memoryview(payload)
        pos = 0

        def take() -> bytes | None:
            nonlocal pos
            (size,) = _FIELD.unpack_from(view, pos)
            pos += _FIELD.size
            if size == _NO_KEY:
                return None
            chunk = bytes(view[pos : pos + size])
            pos += size
            return chunk

        topic = (take() or b"").decode()
        key = take()
        value = take() or b""
        (n_headers,) = _FIELD.unpack_from(view, pos)
        pos += _FIELD.size
        headers = []
        for _ in range(n_headers):
            name = (take() or b"").decode()
            headers.append((name, take() or b""))
        return cls(topic=topic, key=key, value=value, headers=tuple(headers))


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What waits in a spool folder."""

    segments: int
    records: int
    bytes: int
    corrupt_tails: int


class Spool:
    """Append-only, fsync-per-batch storage for undeliverable messages."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._seq = count()
        self._active: Path | None = None

    def _new_segment(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory / f"{_ACTIVE}{os.getpid()}-{next(self._seq)}{_SUFFIX}"

    def append(self, records: Sequence[SpoolRecord]) -> None:
        """Write ``records`` durably (one fsync). Raises DeliveryError when the disk refuses."""
        if not records:
            return
        blob = b"".join(
            _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
            for payload in (record.encode() for record in records)
        )
        with self._lock:
            if self._active is None:
                self._active = self._new_segment()
            try:
                fd = os.open(self._active, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, blob)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise DeliveryError(
                    f"cannot spool {len(records)} undeliverable event(s) to {self._active}: {exc}"
                ) from exc

    def rotate(self) -> None:
        """Start a new segment for later appends (the current one becomes replayable)."""
        with self._lock:
            self._active = None

    def segments(self) -> list[Path]:
        """Every segment file, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(
            (p for p in self.directory.iterdir() if p.suffix == _SUFFIX),
            key=lambda p: (p.stat().st_mtime_ns, p.name),
        )

    def claim(self) -> list[Path]:
        """Take every segment nobody is writing to or replaying, for this process to replay.

        Segments claimed by a process that no longer runs are taken over.
        """
        self.rotate()
        claimed: list[Path] = []
        for path in self.segments():
            if path.name.startswith(_CLAIMED) and _owner_alive(path.name, _CLAIMED):
                continue
            if path.name.startswith(_ACTIVE) and _owner_alive(path.name, _ACTIVE):
                if int(path.name[len(_ACTIVE) :].split("-")[0]) != os.getpid():
                    continue
            target = path.with_name(f"{_CLAIMED}{os.getpid()}-{path.name}")
            try:
                path.rename(target)
            except FileNotFoundError:  # another process took it first
                continue
            claimed.append(target)
        return claimed

    @staticmethod
    def read(path: Path) -> Iterator[SpoolRecord]:
        """The records of one segment; a torn or corrupt tail (crash mid-write) ends it."""
        yield from _read_frames(path)[0]

    def stats(self) -> SpoolStats:
        records = size = corrupt = 0
        segments = self.segments()
        for path in segments:
            found, torn = _read_frames(path)
            records += len(found)
            corrupt += int(torn)
            size += path.stat().st_size
        return SpoolStats(segments=len(segments), records=records, bytes=size, corrupt_tails=corrupt)


def _owner_alive(name: str, prefix: str) -> bool:
    try:
        pid = int(name[len(prefix) :].split("-")[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return prefix == _ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_frames(path: Path) -> tuple[list[SpoolRecord], bool]:
    data = path.read_bytes()
    records: list[SpoolRecord] = []
    pos = 0
    while pos < len(data):
        if pos + _FRAME.size > len(data):
            return records, True
        size, crc = _FRAME.unpack_from(data, pos)
        payload = data[pos + _FRAME.size : pos + _FRAME.size + size]
        if len(payload) != size or zlib.crc32(payload) != crc:
            return records, True
        records.append(SpoolRecord.decode(payload))
        pos += _FRAME.size + size
    return records, False
