"""The event ids seen per kept 1 s window (the rollups' duplicate check), and their table
entries, written incrementally.

Each id is written once: a drain writes the ids a window got since the drain before as
one **chunk** ``ids|<window start µs>|<seq>`` (``seq`` 0, 1, 2… per window; the ids
sorted), never the whole list again. Dropping a window deletes every chunk of it. The
release before wrote the whole list under ``ids|<window start µs>`` (the *legacy* key):
it restores too, is never rewritten, and is deleted with its window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from agentstream.processors.rollups._build import RESOLUTION_US

__all__ = ["IDS", "SeenIds"]

#: the first part of every ids key
IDS: Final = "ids"
_SECOND: Final = RESOLUTION_US["1s"]
#: the chunk of an id read from a legacy whole-list key
_LEGACY: Final = -1
#: the chunk of an id not drained yet
_PENDING: Final = -2


def _key(start: int, seq: int) -> str:
    return f"{IDS}|{start}" if seq == _LEGACY else f"{IDS}|{start}|{seq}"


class SeenIds:
    """The ids seen per 1 s window start (µs), with the chunk each id is written in."""

    __slots__ = ("_chunks", "_deleted", "_ids", "_legacy", "_new")

    def __init__(self) -> None:
        #: window start -> id -> its chunk (:data:`_LEGACY`, :data:`_PENDING`)
        self._ids: dict[int, dict[str, int]] = {}
        #: window start -> ids added since the last drain
        self._new: dict[int, list[str]] = {}
        #: window start -> the next chunk's seq (chunks written or restored)
        self._chunks: dict[int, int] = {}
        #: windows restored from a legacy whole-list key
        self._legacy: set[int] = set()
        self._deleted: list[str] = []

    def seen(self, start: int, event_id: str) -> bool:
        """Whether window ``start`` has seen ``event_id``."""
        ids = self._ids.get(start)
        return ids is not None and event_id in ids

    def add(self, start: int, event_id: str) -> None:
        """Remember ``event_id`` in window ``start`` (not seen there yet)."""
        ids = self._ids.get(start)
        if ids is None:
            ids = self._ids[start] = {}
        ids[event_id] = _PENDING
        new = self._new.get(start)
        if new is None:
            new = self._new[start] = []
        new.append(event_id)

    def drop(self, through: int) -> None:
        """Forget the windows ending at or before ``through``; their keys are deleted by the
        next :meth:`drain`."""
        for start in [s for s in self._ids if s + _SECOND <= through]:
            del self._ids[start]
            self._new.pop(start, None)
            self._deleted.extend(_key(start, seq) for seq in range(self._chunks.pop(start, 0)))
            if start in self._legacy:
                self._legacy.discard(start)
                self._deleted.append(_key(start, _LEGACY))

    def drain(self) -> dict[str, list[str] | None]:
        """The table changes since the last drain: one new chunk per window that got ids,
        ``None`` for each key of a dropped window."""
        changes: dict[str, list[str] | None] = dict.fromkeys(self._deleted)
        for start, new in self._new.items():
            seq = self._chunks.get(start, 0)
            self._chunks[start] = seq + 1
            chunk = sorted(new)
            ids = self._ids[start]
            for event_id in chunk:
                ids[event_id] = seq
            changes[_key(start, seq)] = chunk
        self._new.clear()
        self._deleted.clear()
        return changes

    def entries(self) -> dict[str, list[str]]:
        """The ids' table entries after a drain now (the written chunks, the chunk the next
        drain writes, a legacy key), without draining."""
        entries: dict[str, list[str]] = {}
        for start, ids in self._ids.items():
            pending = self._chunks.get(start, 0)
            for event_id, seq in ids.items():
                key = _key(start, pending if seq == _PENDING else seq)
                entries.setdefault(key, []).append(event_id)
        for chunk in entries.values():
            chunk.sort()
        return entries

    def restore(self, start: int, seq: int | None, value: Iterable[object]) -> None:
        """Read the table entry of window ``start``: chunk ``seq``, or the legacy whole list
        (``seq`` None); the next chunk comes after the highest ``seq`` read."""
        if seq is None:
            self._legacy.add(start)
            seq = _LEGACY
        elif seq < 0:
            raise ValueError(f"chunk number {seq} is negative")
        else:
            self._chunks[start] = max(self._chunks.get(start, 0), seq + 1)
        ids = self._ids.setdefault(start, {})
        for event_id in value:
            ids[str(event_id)] = seq
