"""The encoder thread: validation, redaction and Avro encoding off the agent's thread.

With ``emitter.durability = "memory"`` and ``emitter.encode_in_background`` (the
default), ``emit`` does on the caller's thread only what must raise there: the run
context, the reduced contract check of :mod:`._callsite` (every required field
present, every field of the right type and within its bounds), the snapshot of
``params`` as JSON text (the caller may change its dict afterwards), the event id
and time. It appends the event to an in-memory queue and returns a placeholder
that becomes the event as sent once encoded. One thread, ``agentstream-encoder``,
drains the queue in order: full validation, redaction, encoding, size check, and
the hand-over to the producer (or the spool) exactly as a synchronous ``emit``.

* **GIL.** The thread waits on an event set only when the queue goes from empty
  to non-empty, sleeps ``emitter.encoder_linger_ms`` (20) so a batch gathers while
  the GIL is free, then drains everything waiting in one go; it never polls. An
  agent thread that keeps the GIL is interrupted once per batch and once per switch
  interval of encoding (``sys.getswitchinterval()``, 5 ms by default — left alone:
  a library must not change it), not once per event; when it is in I/O (the common
  case) the encoding costs it nothing.
* **Refused off-thread.** What the reduced check cannot see (the UUID pattern of a
  given ``event_id``, ``params`` text that is not JSON, the model-level rules such
  as ``status ERROR`` needing an error class, an event over ``max_event_bytes``
  after redaction) becomes an ``InvalidEvent`` dead letter on the ``invalid`` topic
  with the reason (redacted), sent — or spooled — like any event, counted in
  ``stats().invalid`` and logged. Never dropped: if even the dead letter cannot be
  built it is logged at CRITICAL and counted in ``stats().lost``.
* **Bounded.** At most ``emitter.encoder_queue_max`` events wait; beyond it, a
  caller first encodes the oldest two itself (so the queue shrinks and order is
  kept), like the producer's full queue diverting to the spool never blocks.
* **Order.** Whatever runs the full pipeline on the caller's thread (a check the
  reduced contract refuses, so that the full one names the field; a very large
  event) first encodes everything queued before it, under the same lock.
* ``flush()`` and ``close()`` count queued events as pending; ``close()`` encodes
  what is left before the producer is flushed and its remainder spooled. An ``emit``
  racing ``close()`` is either queued before it stops the queue (and encoded) or
  refused with ``DeliveryError``: never accepted and then dropped.
* ``event_id`` and ``event_time`` are made here only when the caller gave none (a
  backfill keeps its time); a given one is checked like any field.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

from pydantic_core import PydanticSerializationError, to_json

from agentstream.core.catalog import AGENT_EVENTS
from agentstream.core.errors import DeliveryError
from agentstream.emitter._callsite import accept, copy_of, settle
from agentstream.emitter._core import Deferred, EmitterCore, Headers
from agentstream.schemas import AgentEvent, InvalidEvent
from agentstream.schemas._base import MAX_RAW_BYTES, MAX_TEXT_CHARS, new_uuid, utc_now

__all__ = ["BackgroundEncoder", "EncodingEmitter"]

E = TypeVar("E", bound=AgentEvent)
_log: Final = logging.getLogger("agentstream.emitter")
#: (event type, fields, built event or deferred job, trace sampled, the placeholder
#: emit returned: None for a deferred job, which settles itself)
_Job = tuple[type[AgentEvent], "dict[str, Any] | AgentEvent | Deferred", bool, "AgentEvent | None"]
#: events encoded per hold of the lock (a caller that must go inline waits at most this)
_CHUNK: Final = 64
#: events a caller encodes itself when the queue is full
_HELP: Final = 2
#: ``trusted`` plus the fields ``submit_data`` made itself (only those: a caller's
#: ``event_time`` of a backfill or replay is kept and checked like any field)
#: the fields ``submit_data`` fills in when the caller did not
_MADE_HERE: Final[tuple[tuple[str, Callable[[], object]], ...]] = (
    ("event_id", new_uuid),
    ("event_time", utc_now),
)
_WITH_MADE: dict[tuple[frozenset[str], str], frozenset[str]] = {}


def _with_made(trusted: frozenset[str], made: str) -> frozenset[str]:
    _WITH_MADE[trusted, made] = found = trusted | {made}
    return found


def closed_error() -> DeliveryError:
    """The error of an ``emit`` on a closed (or closing) emitter."""
    return DeliveryError("the Emitter is closed; create a new one to emit more events")


#: room left in an encoded event for the fields of bounded length (ids, names, codes)
_BOUNDED_ROOM: Final = 2048


class BackgroundEncoder:
    """The queue and the thread; ``route`` hands an encoded message to the producer."""

    def __init__(
        self,
        core: EmitterCore,
        route: Callable[[str, bytes, bytes, Headers], None],
        *,
        queue_max: int,
        invalid_topic: str,
    ) -> None:
        self._core = core
        self._route = route
        self._queue_max = queue_max
        self._linger_s = core.settings.emitter.encoder_linger_ms / 1000
        self._invalid_topic = invalid_topic
        self._max_text = core.settings.emitter.max_event_bytes - _BOUNDED_ROOM
        self._free_text = {cls: stream.free_text for cls, stream in AGENT_EVENTS.items()}
        #: ``params`` that JSON cannot hold: as redaction sees them (repr), or refused
        self._fallback = repr if core.redactor is not None else None
        self._queue: deque[_Job] = deque()
        #: held while jobs are encoded, by the thread or a caller going inline
        self._lock = threading.Lock()
        #: held to append a job and to set ``_stopping`` (never while encoding: emit
        #: does not wait for a batch)
        self._gate = threading.Lock()
        self._wake = threading.Event()
        self._in_hand = 0
        self._stopping = False
        #: events refused off-thread and dead-lettered; events not even dead-lettered
        self.invalid = 0
        self.lost = 0
        self._thread = threading.Thread(target=self._run, name="agentstream-encoder", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------

    def submit_data(
        self, event_type: type[E], data: dict[str, Any], sampled: bool, trusted: frozenset[str]
    ) -> E | None:
        """Queue the event of ``data`` and return its placeholder; None when the reduced
        contract refuses it or it is very large (the caller runs the full pipeline)."""
        for name, make in _MADE_HERE:
            if name not in data:
                data[name] = make()
                trusted = _WITH_MADE.get((trusted, name)) or _with_made(trusted, name)
        params = data.get("params")
        if params is not None and type(params) is not str:
            if not isinstance(params, dict | list | tuple):
                return None
            try:  # a snapshot: the caller may change its dict once emit returned
                data["params"] = to_json(
                    params, fallback=self._fallback, inf_nan_mode="null"
                ).decode()
            except PydanticSerializationError:
                return None
        shown = accept(event_type, data, trusted, self._max_text)
        if shown is None:
            return None
        self._submit((event_type, data, sampled, shown))
        return shown

    def submit_built(self, event: E, sampled: bool) -> E | None:
        """Queue a built (validated) event; its placeholder, or None when very large."""
        size = 0
        for name in self._free_text[type(event)]:
            value = event.__dict__.get(name)
            if type(value) is str:
                size += len(value)
        if size > self._max_text:
            return None
        shown = copy_of(event)
        self._submit((type(event), event, sampled, shown))
        return shown

    def submit_deferred(self, job: Deferred, size: int) -> bool:
        """Queue ``job`` (checked at the call site; ``size`` characters of free text);
        False when very large (the caller runs the full pipeline). Refused with
        DeliveryError once the queue is stopped (closing)."""
        if size > self._max_text:
            return False
        self._submit((job.event_type, job, True, None))
        return True

    def _submit(self, job: _Job) -> None:
        queue = self._queue
        if len(queue) >= self._queue_max:
            self.drain(_HELP)
        with self._gate:  # close() sets _stopping under it: a job is refused or drained
            if self._stopping:
                raise closed_error()
            queue.append(job)
        if not self._wake.is_set():
            self._wake.set()

    def inline(self, run: Callable[[], E]) -> E:
        """``run`` the full pipeline on the caller's thread, after everything queued."""
        with self._lock:  # close()'s final drain waits for it, or it sees _stopping
            if self._stopping:
                raise closed_error()
            self._drain_locked(None)
            return run()

    def pending(self) -> int:
        """Events accepted and not yet handed to the producer (read before its counters)."""
        waiting = len(self._queue)
        return waiting + self._in_hand

    # -- the encoder's side ------------------------------------------------------------------

    def _run(self) -> None:
        wake = self._wake
        linger = self._linger_s
        while True:
            wake.wait()
            if linger and not self._stopping:
                # let a batch gather (the GIL is free meanwhile): the agent's thread is
                # interrupted once per batch, not once per event
                time.sleep(linger)
            wake.clear()
            try:
                self.drain(None)
            except Exception:  # pragma: no cover - keep encoding whatever happens
                _log.exception("agentstream: the encoder thread failed; continuing")
            if self._stopping:
                return

    def drain(self, limit: int | None) -> None:
        """Encode the waiting events in order: all of them, or the oldest ``limit``."""
        queue = self._queue
        while queue and (limit is None or limit > 0):
            with self._lock:
                n = _CHUNK if limit is None else min(limit, _CHUNK)
                done = self._drain_locked(n)
            if limit is not None:
                limit -= done

    def _drain_locked(self, limit: int | None) -> int:
        queue = self._queue
        done = 0
        while queue and (limit is None or done < limit):
            self._in_hand = 1  # before it leaves the queue: flush() never misses it
            try:
                job = queue.popleft()
            except IndexError:  # pragma: no cover - emptied meanwhile
                self._in_hand = 0
                break
            try:
                self._encode(job)
            finally:
                self._in_hand = 0
            done += 1
        return done

    def _encode(self, job: _Job) -> None:
        event_type, given, sampled, shown = job
        core = self._core
        data: dict[str, Any] | AgentEvent = {}
        deferred: Deferred | None = None
        try:
            if isinstance(given, dict | AgentEvent):
                data = given
            else:
                deferred = given
                data, sampled = deferred.materialize()
            event = core.completed(event_type, data)
            topic, key, value, headers = core.encoded(event, sampled)
        except Exception as exc:
            self._dead_letter(event_type, data, exc)
            return
        if deferred is not None:
            deferred.settle(event)
        elif shown is not None:
            settle(shown, event)
        self._route(topic, key, value, headers)

    def _dead_letter(
        self, event_type: type[AgentEvent], data: dict[str, Any] | AgentEvent, exc: Exception
    ) -> None:
        core = self._core
        values = data.__dict__ if isinstance(data, AgentEvent) else data
        topic = core.topic_for(event_type)
        reason = f"{event_type.__name__} refused by the emitter's encoder thread: {exc}"
        try:
            raw = to_json(values, fallback=repr, inf_nan_mode="null").decode()
            if core.redactor is not None:  # what the caller gave, with its secrets replaced
                reason = core.redactor.text(reason)
                raw = core.redactor.json_text(raw)
            ids = {
                name: value
                for name in ("run_id", "tenant_id", "event_id")
                if isinstance(value := values.get(name), str) and 0 < len(value) <= 256
            }
            letter = InvalidEvent(
                source_topic=topic,
                partition=0,
                offset=0,
                key=ids["run_id"].encode() if "run_id" in ids else None,
                raw=raw.encode()[:MAX_RAW_BYTES],
                reason=reason[:MAX_TEXT_CHARS],
                error_type=type(exc).__name__,
                **ids,
            )
            value = core.codec.encode_model(letter)
        except Exception as problem:
            self.lost += 1
            _log.critical(
                "agentstream: a %s was refused (%s) and its dead letter failed (%s): EVENT LOST",
                event_type.__name__,
                exc,
                problem,
            )
            return
        self.invalid += 1
        _log.error("agentstream: dead-lettered to %s: %s", self._invalid_topic, letter.reason)
        self._route(self._invalid_topic, letter.key or b"", value, None)

    def close(self) -> None:
        """Stop the thread once everything queued is encoded (and encode stragglers)."""
        with self._gate:  # no job is appended after this
            self._stopping = True
        self._wake.set()
        self._thread.join()
        with self._lock:  # also waits for a caller going inline
            self._drain_locked(None)


class EncodingEmitter(EmitterCore):
    """The base of :class:`~agentstream.Emitter`: emits through its ``_encoder`` when it
    has one, else (disk durability) as ``EmitterCore`` does."""

    _encoder: BackgroundEncoder | None = None
    _closed: bool

    def _start_encoder(self, route: Callable[[str, bytes, bytes, Headers], None]) -> None:
        """Memory durability: validation, redaction and encoding off the caller's thread."""
        es = self.settings.emitter
        if es.durability == "memory" and es.encode_in_background:
            self._encoder = BackgroundEncoder(
                self,
                route,
                queue_max=es.encoder_queue_max,
                invalid_topic=self.settings.topics.name("invalid"),
            )
            # the tool-call scopes queue themselves (the closed check: the queue's own)
            self.submit_deferred = self._encoder.submit_deferred

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error()

    def emit_data(
        self,
        event_type: type[E],
        data: dict[str, Any],
        sampled: bool = True,
        trusted: frozenset[str] = frozenset(),
    ) -> E:
        encoder = self._encoder
        if encoder is None:
            return super().emit_data(event_type, data, sampled)
        self._check_open()
        shown = encoder.submit_data(event_type, data, sampled, trusted)
        if shown is not None:
            return shown
        return encoder.inline(
            lambda: super(EncodingEmitter, self).emit_data(event_type, data, sampled)
        )

    def emit_built(self, event: E, sampled: bool = True) -> E:
        encoder = self._encoder
        if encoder is None:
            return super().emit_built(event, sampled)
        self._check_open()
        shown = encoder.submit_built(event, sampled)
        if shown is not None:
            return shown
        return encoder.inline(lambda: super(EncodingEmitter, self).emit_built(event, sampled))
