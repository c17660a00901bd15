"""The Emitter's durable spool: messages the broker could not take, kept on disk.

Layout: a folder of append-only segment files (format: :mod:`._frames`; each
frame has a mark, a length and a CRC, so a reader skips a damaged frame and
goes on with the next valid one). Names sort in creation order::

    seg-<time_ns>-<pid>-<token>.spool        written by a live emitter, or waiting
    wal-seg-<...>.spool                      the write-ahead log of an emitter in
                                             ``durability = "disk"`` mode: locked while
                                             its process lives, replayed like a
                                             waiting segment after a crash
    claimed-seg-<...>.spool                  being replayed
    rejected-seg-<...>.spool                 refused by the broker for good (too large,
                                             not authorised): kept, not replayed on
                                             their own (``agentstream spool replay
                                             --include-rejected``)
    quarantine/<segment>.bad, .json          the unreadable bytes of a replayed segment
                                             and where they were (ranges, frames)

Ownership is an exclusive ``flock`` held for as long as a process writes or
replays a segment: a writer creates its segment under a temporary name, locks
it, then renames it into place; a replayer locks a segment (non-blocking),
checks it is still the same file and renames it to ``claimed-…``. So two
processes (or two emitters of one process) never replay the same segment, and a
segment left by a crashed process is unlocked and taken over. Appends are
followed by one ``fsync`` per batch; a failed append is truncated away, so a
segment holds a broken frame only after a crash mid-write (a *torn tail*) or
when the disk corrupts it. The reader keeps every readable frame around such
damage; the damaged bytes go to ``quarantine/`` before the segment is deleted.

What a replay could not finish is written to a *replacement* segment named
after the original (``<original>.r<token>.spool``), which sorts where the
original did: newer segments never overtake it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentstream.core.errors import DeliveryError
from agentstream.emitter._frames import (
    MAGIC,
    BadRange,
    Scan,
    SpoolRecord,
    encode_frames,
    read_frames,
    scan_frames,
)
from agentstream.emitter._segfiles import (
    REJECTED,
    SUFFIX,
    WAL_PREFIX,
    claim_one,
    create_segment,
    creation_order,
    fsync_dir,
    original_name,
    read_quiet,
    unlocked,
    write_file,
)

__all__ = [
    "MAGIC",
    "WAL_PREFIX",
    "ClaimedSegment",
    "QuarantineStats",
    "SegmentInfo",
    "Spool",
    "SpoolRecord",
    "SpoolStats",
    "create_segment",
    "read_frames",
]

#: where the unreadable bytes of replayed segments are kept (``<segment>.bad`` + ``.json``)
QUARANTINE: Final = "quarantine"


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """What waits in a spool folder."""

    segments: int
    records: int
    bytes: int
    corrupt_tails: int
    rejected_records: int = 0
    #: unreadable bytes and frames set aside in ``quarantine/`` by replays
    quarantined_bytes: int = 0
    quarantined_frames: int = 0


@dataclass(frozen=True, slots=True)
class QuarantineStats:
    """What ``quarantine/`` holds: files, unreadable bytes, frames lost in them."""

    files: int
    bytes: int
    frames: int


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file, for ``agentstream spool status``."""

    path: Path
    #: ``waiting`` (replayable), ``in use`` (locked by a writer or a replay), ``rejected``
    state: str
    records: int
    bytes: int
    #: some bytes are unreadable (a torn tail or corruption); readable frames still count
    torn_tail: bool
    modified: float
    bad_bytes: int = 0
    bad_frames: int = 0


class ClaimedSegment:
    """A segment this process replays; locked until :meth:`delete` or :meth:`release`."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    def __repr__(self) -> str:
        return f"ClaimedSegment({str(self.path)!r})"

    def data(self) -> bytes:
        """The segment's bytes."""
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def read(self) -> tuple[list[SpoolRecord], bool]:
        """The readable records and whether some bytes were not readable."""
        return read_frames(self.data())

    def scan(self) -> tuple[Scan, bytes]:
        """The readable records and the bad ranges, with the segment's bytes."""
        data = self.data()
        return scan_frames(data), data

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
        #: segments this process holds elsewhere (its write-ahead log): not "waiting"
        self.held: set[Path] = set()

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
        path, fd = create_segment(self.directory, self._token, REJECTED if rejected else "")
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
        found = [p for p in self.directory.iterdir() if p.name.endswith(SUFFIX)]
        return sorted(found, key=creation_order)

    def has_waiting(self) -> bool:
        """Whether some segment (not rejected) might be replayed now (a directory listing)."""
        if not self.directory.is_dir():
            return False
        with self._lock:
            mine = {path for path, _, _ in self._open.values()} | self.held
        return any(
            p.name.endswith(SUFFIX) and not p.name.startswith(REJECTED) and p not in mine
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
            if path.name.startswith(REJECTED) and not include_rejected:
                continue
            taken = claim_one(path)
            if taken is not None:
                claimed.append(ClaimedSegment(*taken))
        return claimed

    def topics(self, *, include_rejected: bool = False) -> set[str]:
        """The topics of the records waiting (reads every segment)."""
        return {
            record.topic
            for path in self.segment_paths()
            if include_rejected or not path.name.startswith(REJECTED)
            for record in read_quiet(path)
        }

    def infos(self) -> list[SegmentInfo]:
        """Every segment with its record count and state."""
        infos = []
        for path in self.segment_paths():
            try:
                data = path.read_bytes()
                stat = path.stat()
            except FileNotFoundError:  # replayed meanwhile
                continue
            scan = scan_frames(data)
            if path.name.startswith(REJECTED):
                state = "rejected"
            else:
                state = "waiting" if unlocked(path) else "in use"
            infos.append(
                SegmentInfo(
                    path,
                    state,
                    len(scan.records),
                    len(data),
                    scan.damaged,
                    stat.st_mtime,
                    scan.bad_bytes,
                    scan.bad_frames,
                )
            )
        return infos

    def stats(self) -> SpoolStats:
        """Totals over every segment."""
        infos = self.infos()
        quarantine = self.quarantine_stats()
        return SpoolStats(
            segments=len(infos),
            records=sum(i.records for i in infos if i.state != "rejected"),
            bytes=sum(i.bytes for i in infos),
            corrupt_tails=sum(int(i.torn_tail) for i in infos),
            rejected_records=sum(i.records for i in infos if i.state == "rejected"),
            quarantined_bytes=quarantine.bytes,
            quarantined_frames=quarantine.frames,
        )

    # -- damage and leftovers --------------------------------------------------------------

    def quarantine(self, segment: Path, data: bytes, bad: Sequence[BadRange]) -> Path | None:
        """Keep the bad bytes of ``segment`` aside (fsynced); the ``.bad`` file, if any.

        Raises :class:`DeliveryError` when the disk refuses: the segment must then
        be kept.
        """
        if not bad:
            return None
        folder = self.directory / QUARANTINE
        base = original_name(segment.name).removesuffix(SUFFIX)
        blob = b"".join(data[r.offset : r.offset + r.size] for r in bad)
        meta = {
            "segment": segment.name,
            "bytes": len(blob),
            "frames": sum(r.frames for r in bad),
            "ranges": [[r.offset, r.size, r.frames] for r in bad],
            "quarantined_at": time.time(),
        }
        target = folder / f"{base}.{secrets.token_hex(3)}.bad"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_file(target, blob)
            write_file(target.with_suffix(".json"), json.dumps(meta).encode())
            fsync_dir(folder)
        except OSError as exc:
            raise DeliveryError(f"cannot quarantine the bad bytes of {segment}: {exc}") from exc
        return target

    def quarantine_stats(self) -> QuarantineStats:
        """Totals over ``quarantine/``."""
        folder = self.directory / QUARANTINE
        files = size = frames = 0
        if folder.is_dir():
            for meta in folder.glob("*.json"):
                try:
                    data = json.loads(meta.read_text())
                except (OSError, ValueError):
                    continue
                files += 1
                size += int(data.get("bytes", 0))
                frames += int(data.get("frames", 0))
        return QuarantineStats(files, size, frames)

    def write_replacement(
        self, original: Path, records: Sequence[SpoolRecord], *, rejected: bool = False
    ) -> None:
        """Write ``records`` (fsynced) to a new segment that sorts where ``original`` did.

        Used by a replay for what it could not finish, so events spooled meanwhile
        (in newer segments) never overtake them. Raises :class:`DeliveryError`.
        """
        if not records:
            return
        name = original_name(original.name).removesuffix(SUFFIX)
        name = f"{name}.r{secrets.token_hex(3)}{SUFFIX}"
        if rejected:
            name = REJECTED + name
        path = self.directory / name
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_file(path, MAGIC + encode_frames(records), rename=True)
            fsync_dir(self.directory)
        except OSError as exc:
            raise DeliveryError(
                f"cannot spool {len(records)} undeliverable event(s) in {self.directory}: {exc}"
            ) from exc

    @staticmethod
    def read(path: Path) -> list[SpoolRecord]:
        """The readable records of one segment file."""
        return read_frames(path.read_bytes())[0]
