"""The Emitter's producer set-up: librdkafka configuration, codec, and its counters."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Final, Protocol

from agentstream.core.config import Settings
from agentstream.core.kafka import client_config

__all__ = [
    "EmitterStats",
    "kafka_producer_config",
    "track",
    "untrack",
]

_log: Final = logging.getLogger("agentstream.emitter")


@dataclass(frozen=True, slots=True)
class EmitterStats:
    """Counters since the emitter started.

    ``emitted``: accepted by ``emit``; ``delivered``: acknowledged by the broker;
    ``failed``: delivery reports with an error; ``spooled``: written to the spool
    (failed, diverted or left at close); ``replayed``: spooled events delivered by a
    replay; ``rejected``: refused for good by the broker (kept in the spool);
    ``lost``: could not even be spooled (disk full); ``queued``: in the producer's
    queue now; ``diverting``: new events go to the spool while the broker is away;
    ``encoding``: accepted, waiting for the encoder thread; ``invalid``: refused by the
    encoder thread's full validation and sent as dead letters (counted in ``emitted``).
    """

    emitted: int
    delivered: int
    failed: int
    spooled: int
    replayed: int
    rejected: int
    lost: int
    queued: int
    diverting: bool
    #: accepted by ``emit``, waiting for the encoder thread (memory durability)
    encoding: int = 0
    #: refused by the encoder thread's full validation: sent as dead letters with the reason
    invalid: int = 0


def kafka_producer_config(settings: Settings) -> dict[str, Any]:
    """The confluent-kafka producer configuration of ``settings`` (no callbacks)."""
    return client_config(settings, "emitter", "producer")


class _Closable(Protocol):
    settings: Settings

    def close(self, timeout: float | None = None) -> None: ...


_LIVE: weakref.WeakSet[Any] = weakref.WeakSet()
_atexit_registered = False
_atexit_lock = threading.Lock()


def _close_all_at_exit() -> None:
    for emitter in list(_LIVE):
        try:
            emitter.close(emitter.settings.emitter.flush_at_exit_s)
        except Exception:  # pragma: no cover - best effort at exit
            _log.exception("agentstream: closing an emitter at exit failed")


def track(emitter: _Closable) -> None:
    """Close ``emitter`` at interpreter exit (flushing up to ``emitter.flush_at_exit_s``)."""
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_close_all_at_exit)
            _atexit_registered = True
        _LIVE.add(emitter)


def untrack(emitter: _Closable) -> None:
    """``emitter`` was closed: nothing to do at exit."""
    _LIVE.discard(emitter)
