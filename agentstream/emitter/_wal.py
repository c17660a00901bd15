"""The write-ahead log of ``durability = "disk"``: each event on disk before ``emit`` returns.

Each emitted event is appended (one ``write``, no ``fsync``) as a spool frame to
the open ``wal-seg-…`` segment of the spool folder, before it is handed to the
producer. Once written it is in the operating system's page cache, which
survives the death of the process (SIGKILL, OOM killer, an unhandled SIGTERM):
the next process that replays the spool sends it. ``fsync`` — needed only to
survive a power loss or a kernel crash — runs every ``emitter.wal_fsync_interval_ms``
from the background thread (a group commit of everything written since), or, with
an interval of 0, before ``emit`` returns (callers arriving together share one).

An entry is *settled* when Kafka acknowledged it, or when it was written to the
ordinary spool (its delivery failed, or it was diverted). A segment is retired
(deleted) once it is closed and all its entries are settled; the open segment is
cut back to its header whenever all its entries are settled, so a healthy
emitter's log stays a few kilobytes. Segments stay locked (``flock``) while the
process lives, so no replay takes them; after a crash they are ordinary waiting
segments. A replay after a crash may send events Kafka had already acknowledged:
duplicates, which consumers drop by ``event_id`` (the idempotency key).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Final

from agentstream.core.errors import DeliveryError
from agentstream.emitter._frames import MAGIC, frame
from agentstream.emitter._spool import WAL_PREFIX, Spool, SpoolRecord, create_segment

__all__ = ["WalSegment", "WriteAheadLog"]

_log: Final = logging.getLogger("agentstream.emitter")
#: a log the disk refuses is reported at most this often
_WARN_EVERY_S: Final = 30.0
#: the open segment is cut back to its header at most this often when all is settled
_TRUNCATE_EVERY_S: Final = 1.0
#: under steady load (never all settled at once) the open segment is closed this often,
#: so acknowledged entries leave the log (and a replay after a crash sends fewer again)
_ROTATE_EVERY_S: Final = 0.5


class WalSegment:
    """One log segment: entries written (callers) and settled (the background thread)."""

    __slots__ = ("closed", "fd", "path", "report", "settled", "size", "synced", "written")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = len(MAGIC)
        self.synced = self.size
        self.written = 0
        self.settled = 0
        self.closed = False
        #: the producer's per-message delivery callback for this segment's entries
        self.report: Any = None

    def __repr__(self) -> str:
        return f"WalSegment({self.path.name!r}, {self.settled}/{self.written} settled)"


class WriteAheadLog:
    """The log of one emitter; ``append`` is called under the emitter's route lock."""

    def __init__(
        self, spool: Spool, *, segment_bytes: int, fsync_interval_s: float, reporter: Any
    ) -> None:
        self._spool = spool
        self._directory = spool.directory
        self._segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        #: ``reporter(segment)`` → the delivery callback of a new segment's entries
        self._reporter = reporter
        self._token = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._open: WalSegment | None = None
        self._opened = time.monotonic()
        #: a segment created ahead by the background thread: rotating costs a caller nothing
        self._spare: WalSegment | None = None
        self._closed: list[WalSegment] = []
        self._next_sync = time.monotonic() + fsync_interval_s
        self._last_truncate = time.monotonic()
        self._warned = 0.0

    def __repr__(self) -> str:
        return f"WriteAheadLog({str(self._directory)!r})"

    def append(self, record: SpoolRecord) -> tuple[WalSegment, int]:
        """Write one entry (no fsync); its segment and the segment's size after it.

        Raises :class:`DeliveryError` when the disk refuses (nothing is left of the
        entry then).
        """
        blob = frame(record.encode())
        with self._lock:
            segment = self._open
            try:
                if segment is None:
                    segment = self._spare or self._new_segment()
                    self._spare = None
                    self._open = segment
                    self._opened = time.monotonic()
                written = os.write(segment.fd, blob)
                if written != len(blob):
                    raise OSError(f"short write ({written} of {len(blob)} bytes)")
            except OSError as exc:
                if segment is not None:
                    with contextlib.suppress(OSError):
                        os.ftruncate(segment.fd, segment.size)
                raise DeliveryError(
                    f"cannot write the event to the write-ahead log: {exc}"
                ) from exc
            segment.size += len(blob)
            segment.written += 1
            if segment.size >= self._segment_bytes:
                segment.closed = True
                self._closed.append(segment)
                self._open = None
            return segment, segment.size

    def try_append(self, record: SpoolRecord) -> tuple[WalSegment | None, int]:
        """:meth:`append`, or ``(None, 0)`` when the disk refuses (logged, rate-limited):
        the event then goes on with memory durability."""
        try:
            return self.append(record)
        except DeliveryError as exc:
            now = time.monotonic()
            if now - self._warned >= _WARN_EVERY_S:
                self._warned = now
                _log.critical("agentstream: %s; the event is sent without it", exc)
            return None, 0

    def _new_segment(self) -> WalSegment:
        path, fd = create_segment(self._directory, self._token, WAL_PREFIX)
        segment = WalSegment(path, fd)
        segment.report = self._reporter(segment)
        self._spool.held.add(path)
        return segment

    def sync_to(self, segment: WalSegment, size: int) -> None:
        """``fsync`` until ``size`` bytes of ``segment`` are durable (group commit)."""
        with self._sync_lock:
            if segment.synced >= size or segment.fd < 0:
                return  # another caller's fsync covered it
            target = segment.size
            os.fsync(segment.fd)
            segment.synced = max(segment.synced, target)

    def maintain(self, *, final: bool = False) -> None:
        """Background duty: periodic fsync, retire settled segments, cut the open one back."""
        now = time.monotonic()
        if self.fsync_interval_s > 0 and (now >= self._next_sync or final):
            self._next_sync = now + self.fsync_interval_s
            with self._lock:
                segments = [*self._closed, *([self._open] if self._open else [])]
            for segment in segments:
                if segment.synced < segment.size:
                    self.sync_to(segment, segment.size)
        if self._spare is None and self._open is not None and not final:
            try:  # else a caller creates one when it needs it
                spare: WalSegment | None = self._new_segment()
            except OSError:
                spare = None
            with self._lock:
                taken = self._spare is None
                if taken:
                    self._spare = spare
            if not taken and spare is not None:  # a caller made one meanwhile
                self._retire(spare)
        with self._lock:
            current = self._open
            if (
                current is not None
                and self._spare is not None
                and current.settled < current.written
                and now - self._opened >= _ROTATE_EVERY_S
            ):
                current.closed = True
                self._closed.append(current)
                self._open, self._spare = self._spare, None
                self._opened = now
            done = [s for s in self._closed if s.settled >= s.written]
            self._closed = [s for s in self._closed if s.settled < s.written]
            current = self._open
            if (
                current is not None
                and current.settled >= current.written
                and current.size > len(MAGIC)
                and (final or now - self._last_truncate >= _TRUNCATE_EVERY_S)
            ):
                self._last_truncate = now
                with contextlib.suppress(OSError):
                    os.ftruncate(current.fd, len(MAGIC))
                    current.size = current.synced = len(MAGIC)
                    current.written = current.settled = 0
        for segment in done:
            self._retire(segment)

    def _retire(self, segment: WalSegment) -> None:
        with self._sync_lock:
            with contextlib.suppress(OSError):
                segment.path.unlink(missing_ok=True)
            os.close(segment.fd)
            segment.fd = -1
        self._spool.held.discard(segment.path)

    @property
    def unsettled(self) -> int:
        """Entries not acknowledged nor spooled yet."""
        with self._lock:
            segments = [*self._closed, *([self._open] if self._open else [])]
        return sum(s.written - s.settled for s in segments)

    def close(self) -> None:
        """Retire what is settled; segments with unsettled entries stay, for a replay."""
        with self._lock:
            if self._open is not None:
                self._open.closed = True
                self._closed.append(self._open)
                self._open = None
            if self._spare is not None:
                self._closed.append(self._spare)
                self._spare = None
            segments, self._closed = self._closed, []
        for segment in segments:
            if segment.settled >= segment.written:
                self._retire(segment)
                continue
            # kept on disk and unlocked: the next replay sends them again
            with contextlib.suppress(OSError):
                os.fsync(segment.fd)
            os.close(segment.fd)
            segment.fd = -1
            self._spool.held.discard(segment.path)
