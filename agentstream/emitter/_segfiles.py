"""Segment files on disk: creating, locking, claiming, naming, and small-file writes."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Final

from agentstream.emitter._frames import MAGIC, SpoolRecord, read_frames

__all__ = [
    "CLAIMED",
    "PARTIAL",
    "REJECTED",
    "SEGMENT",
    "SUFFIX",
    "WAL_PREFIX",
    "claim_one",
    "create_segment",
    "creation_order",
    "fsync_dir",
    "original_name",
    "read_quiet",
    "unlocked",
    "write_file",
]

SEGMENT: Final = "seg-"
CLAIMED: Final = "claimed-"
REJECTED: Final = "rejected-"
WAL_PREFIX: Final = "wal-"
SUFFIX: Final = ".spool"
PARTIAL: Final = ".new"


def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_dir(directory: Path) -> None:
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


def create_segment(directory: Path, token: str, prefix: str = "") -> tuple[Path, int]:
    """A new, locked, fsynced segment holding only the magic: its path and fd (append mode)."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{prefix}{SEGMENT}{time.time_ns():020d}-{os.getpid()}-{token}{SUFFIX}"
    path = directory / name
    partial = path.with_name(name + PARTIAL)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, MAGIC)
        os.fsync(fd)
        os.rename(partial, path)
        fsync_dir(directory)
    except OSError:
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    return path, fd


def read_quiet(path: Path) -> list[SpoolRecord]:
    try:
        return read_frames(path.read_bytes())[0]
    except FileNotFoundError:  # replayed meanwhile
        return []


def original_name(name: str) -> str:
    """``claimed-rejected-wal-seg-…`` → ``seg-…``."""
    while True:
        for prefix in (CLAIMED, REJECTED, WAL_PREFIX):
            if name.startswith(prefix):
                name = name.removeprefix(prefix)
                break
        else:
            return name


def creation_order(path: Path) -> tuple[str, str]:
    return original_name(path.name), path.name


def write_file(path: Path, data: bytes, *, rename: bool = False) -> None:
    """Write ``data`` to a new file and fsync it (under a temporary name first if ``rename``)."""
    target = path.with_name(path.name + PARTIAL) if rename else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if rename:
        os.rename(target, path)


def unlocked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        if try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        return False
    finally:
        os.close(fd)


def claim_one(path: Path) -> tuple[Path, int] | None:
    """Lock ``path`` (non-blocking) and rename it to ``claimed-…``: its new path and fd."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:  # another process took it first
        return None
    try:
        if not try_lock(fd):
            os.close(fd)
            return None
        # the name may have moved on between open and lock (claimed and deleted elsewhere)
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            os.close(fd)
            return None
        target = path
        if not path.name.startswith((CLAIMED, REJECTED)):
            target = path.with_name(CLAIMED + path.name)
            os.rename(path, target)
    except FileNotFoundError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return target, fd
