"""An in-memory sink: the test double of every :class:`BatchingSink`.

It batches, backs off and pushes back exactly like the real sinks (it *is* a
``BatchingSink``) but "writes" into lists, so pipeline logic can be tested
without a database. Failures are scripted: :meth:`ListSink.fail_next` makes
the next writes raise :class:`StorageError`, :meth:`ListSink.reject` refuses
chosen items for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from agentstream.core.config import SinkSettings
from agentstream.core.errors import StorageError
from agentstream.sinks._base import Batch, BatchingSink, Rejected

__all__ = ["ListSink"]

T = TypeVar("T")


class ListSink(BatchingSink[T]):
    """Keeps written items per key in :attr:`written`; every batch in :attr:`batches`."""

    def __init__(
        self,
        settings: SinkSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(settings or SinkSettings(), clock=clock)
        self.written: dict[str, list[T]] = {}
        #: (key, token, item count) of each successful write, in order
        self.batches: list[tuple[str, str | None, int]] = []
        #: tokens of every write attempt, failed ones included
        self.attempts: list[str | None] = []
        self._fail_next = 0
        self._reject: Callable[[T], str | None] | None = None
        self.setup_called = False

    def setup(self) -> None:
        self.setup_called = True

    def fail_next(self, times: int = 1) -> None:
        """The next ``times`` writes raise :class:`StorageError`."""
        self._fail_next += times

    def reject(self, rule: Callable[[T], str | None]) -> None:
        """Refuse items for which ``rule`` returns a reason."""
        self._reject = rule

    def write(self, batch: Batch[T]) -> Sequence[Rejected[T]]:
        self.attempts.append(batch.token())
        if self._fail_next:
            self._fail_next -= 1
            raise StorageError("ListSink: scripted failure")
        rejected: list[Rejected[T]] = []
        kept: list[T] = []
        for item, pos in zip(batch.items, batch.positions, strict=True):
            reason = self._reject(item) if self._reject else None
            if reason is None:
                kept.append(item)
            else:
                rejected.append(Rejected(batch.key, item, pos, reason, "Rejected"))
        self.written.setdefault(batch.key, []).extend(kept)
        self.batches.append((batch.key, batch.token(), len(batch)))
        return rejected
