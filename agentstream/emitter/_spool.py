"""The Emitter's durable spool: messages the broker could not take, kept on disk.

Layout: a folder of append-only segment files, each starting with the 8-byte
magic ``AGSPOOL1`` followed by frames ``length (u32 BE) | crc32 (u32 BE) |
payload``; a payload holds the topic, key, value and headers of one Kafka
message. Names sort in creation order::

    seg-<time_ns>-<pid>-<token>.spool        written by a live emitter, or waiting
    claimed-seg-<...>.spool                  being replayed
    rejected-seg-<...>.spool                 refused by the broker for good (too large,
                                             not authorised): kept, not replayed on
                                             their own (``agentstream spool replay
                                             --include-rejected``)

Ownership is an exclusive ``flock`` held for as long as a process writes or
replays a segment: a writer creates its segment under a temporary name, locks
it, then renames it into place; a replayer locks a segment (non-blocking),
checks it is still the same file and renames it to ``claimed-…``. So two
processes (or two emitters of one process) never replay the same segment, and a
segment left by a crashed process is unlocked and taken over. Appends are
followed by one ``fsync`` per batch; a failed append is truncated away, so a
segment never holds a broken frame except after a crash mid-write, which the
reader recognises (length or CRC mismatch) and stops at (a *torn tail*).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentstream.core.errors import DeliveryError

__all__ = ["ClaimedSegment", "SegmentInfo", "Spool", "SpoolRecord", "SpoolStats"]

MAGIC: Final = b"AGSPOOL1"
_FRAME = struct.Struct(">II")
_FIELD = struct.Struct(">I")
_NO_KEY: Final = 0xFFFFFFFF
#: a frame longer than this is corruption, not a record
_MAX_FRAME: Final = 256 * 1024 * 1024
_SEGMENT: Final = "seg-"
_CLAIMED: Final = "claimed-"
_REJECTED: Final = "rejected-"
_SUFFIX: Final = ".spool"
_PARTIAL: Final = ".new"


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


def encode_frames(records: Sequence[SpoolRecord]) -> bytes:
    """``records`` framed (length, CRC-32, payload) and concatenated."""
    out = []
    for record in records:
        payload = record.encode()
        out.append(_FRAME.pack(len(payload), zlib.crc32(payload)))
        out.append(payload)
    return b"".join(out)


def read_frames(data: bytes) -> tuple[list[SpoolRecord], bool]:
    """The records of a segment's bytes and whether it ended in a torn or corrupt tail."""
    if data[: len(MAGIC)] != MAGIC:
        return [], len(data) > 0
    view = memoryview(data)
    records: list[SpoolRecord] = []
    pos = len(MAGIC)
    end = len(data)
    while pos < end:
        if pos + _FRAME.size > end:
            return records, True
        size, crc = _FRAME.unpack_from(view, pos)
        start = pos + _FRAME.size
        if size > _MAX_FRAME or start + size > end:
            return records, True
        payload = view[start : start + size]
        if zlib.crc32(payload) != crc:
            return records, True
        try:
            records.append(SpoolRecord.decode(payload))
        except ValueError:
            return records, True
        pos = start + size
    return records, False


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What waits in a spool folder."""

    segments: int
    records: int
    bytes: int
    corrupt_tails: int
    rejected_records: int = 0


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file, for ``agentstream spool status``."""

    path: Path
    #: ``waiting`` (replayable), ``in use`` (locked by a writer or a replay), ``rejected``
    state: str
    records: int
    bytes: int
    torn_tail: bool
    modified: float


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse
        pass
    finally:
        os.close(fd)


class ClaimedSegment:
    """A segment this process replays; locked until :meth:`delete` or :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def __repr__(self) -> str:
        return f"ClaimedSegment({str(self.path)!r})"

    def read(self) -> tuple[list[SpoolRecord], bool]:
        """The records and whether the segment had a torn tail."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return read_frames(b"".join(chunks))

    def delete(self) -> None:
        """Every record was delivered or spooled again: remove the segment."""
        if self._fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            self.release()

    def release(self) -> None:
        """Give the segment back, untouched, for a later replay."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Spool:
    """Append-only, fsync-per-batch storage for undeliverable messages.

    Thread-safe. ``segment_bytes`` bounds a segment's size (a new one starts
    after it); :meth:`close` releases this spool's segments for replay.
    """

    def __init__(self, directory: Path | str, *, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._token = secrets.token_hex(4)
        # (path, fd, size) of the open segment, per kind (normal / rejected)
        self._open: dict[bool, tuple[Path, int, int]] = {}

    def __repr__(self) -> str:
        return f"Spool({str(self.directory)!r})"

    # -- writing ---------------------------------------------------------------------------

    def append(self, records: Sequence[SpoolRecord], *, rejected: bool = False) -> None:
        """Write ``records`` durably (one ``fsync``).

        Raises :class:`DeliveryError` when the disk refuses (full, read-only);
        nothing of the batch stays in the segment then.
        """
        if not records:
            return
        blob = encode_frames(records)
        with self._lock:
            try:
                path, fd, size = self._open.get(rejected) or self._create(rejected)
            except OSError as exc:
                raise DeliveryError(
                    f"cannot spool {len(records)} undeliverable event(s) in {self.directory}: {exc}"
                ) from exc
            try:
                view = memoryview(blob)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            except OSError as exc:
                self._undo(rejected, path, fd, size)
                raise DeliveryError(
                    f"cannot spool {len(records)} undeliverable event(s) to {path}: {exc}"
                ) from exc
            size += len(blob)
            if size >= self.segment_bytes:
                os.close(fd)
                del self._open[rejected]
            else:
                self._open[rejected] = (path, fd, size)

    def _create(self, rejected: bool) -> tuple[Path, int, int]:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{_SEGMENT}{time.time_ns():020d}-{os.getpid()}-{self._token}{_SUFFIX}"
        if rejected:
            name = _REJECTED + name
        path = self.directory / name
        partial = path.with_name(name + _PARTIAL)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, MAGIC)
            os.fsync(fd)
            os.rename(partial, path)
            _fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            partial.unlink(missing_ok=True)
            raise
        entry = (path, fd, len(MAGIC))
        self._open[rejected] = entry
        return entry

    def _undo(self, rejected: bool, path: Path, fd: int, size: int) -> None:
        """Cut a failed append off (best effort) and start a new segment next time."""
        with contextlib.suppress(OSError):  # else the reader stops at the torn frame
            os.ftruncate(fd, size)
        os.close(fd)
        self._open.pop(rejected, None)

    def rotate(self) -> None:
        """Close the open segments: later appends go to new ones, these become replayable."""
        with self._lock:
            for _, fd, _ in self._open.values():
                os.close(fd)
            self._open.clear()

    close = rotate

    # -- reading ---------------------------------------------------------------------------

    def segment_paths(self) -> list[Path]:
        """Every segment file, oldest first (rejected ones included)."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.name.endswith(_SUFFIX)]
        return sorted(found, key=_creation_order)

    def has_waiting(self) -> bool:
        """Whether some segment (not rejected) might be replayed now (a directory listing)."""
        if not self.directory.is_dir():
            return False
        with self._lock:
            mine = {path for path, _, _ in self._open.values()}
        return any(
            p.name.endswith(_SUFFIX) and not p.name.startswith(_REJECTED) and p not in mine
            for p in self.directory.iterdir()
        )

    def claim(
        self, *, include_rejected: bool = False, limit: int | None = None
    ) -> list[ClaimedSegment]:
        """Lock and take the segments nobody writes or replays, oldest first.

        This spool's own open segments are closed first, so they are included.
        """
        self.rotate()
        claimed: list[ClaimedSegment] = []
        for path in self.segment_paths():
            if limit is not None and len(claimed) >= limit:
                break
            if path.name.startswith(_REJECTED) and not include_rejected:
                continue
            segment = _claim_one(path)
            if segment is not None:
                claimed.append(segment)
        return claimed

    def infos(self) -> list[SegmentInfo]:
        """Every segment with its record count and state."""
        infos = []
        for path in self.segment_paths():
            try:
                data = path.read_bytes()
                stat = path.stat()
            except FileNotFoundError:  # replayed meanwhile
                continue
            records, torn = read_frames(data)
            if path.name.startswith(_REJECTED):
                state = "rejected"
            else:
                state = "waiting" if _unlocked(path) else "in use"
            infos.append(SegmentInfo(path, state, len(records), len(data), torn, stat.st_mtime))
        return infos

    def stats(self) -> SpoolStats:
        """Totals over every segment."""
        infos = self.infos()
        return SpoolStats(
            segments=len(infos),
            records=sum(i.records for i in infos if i.state != "rejected"),
            bytes=sum(i.bytes for i in infos),
            corrupt_tails=sum(int(i.torn_tail) for i in infos),
            rejected_records=sum(i.records for i in infos if i.state == "rejected"),
        )

    @staticmethod
    def read(path: Path) -> list[SpoolRecord]:
        """The records of one segment file (up to a torn tail)."""
        return read_frames(path.read_bytes())[0]


def _creation_order(path: Path) -> tuple[str, str]:
    name = path.name
    for prefix in (_CLAIMED, _REJECTED):
        name = name.removeprefix(prefix)
    return name, path.name


def _unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        return False
    finally:
        os.close(fd)


def _claim_one(path: Path) -> ClaimedSegment | None:
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:  # another process took it first
        return None
    try:
        if not _try_lock(fd):
            os.close(fd)
            return None
        # the name may have moved on between open and lock (claimed and deleted elsewhere)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
        target = path
        if not path.name.startswith((_CLAIMED, _REJECTED)):
            target = path.with_name(_CLAIMED + path.name)
            os.rename(path, target)
    except FileNotFoundError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return ClaimedSegment(target, fd)
