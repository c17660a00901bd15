"""The tool-call scope: one implementation for ``with``, ``async with`` and decorators.

``emitter.tool_call("search", params=...)`` returns a :class:`ToolCallScope`.
Entering it binds the run's ids (a missing :func:`run_context` fails here, before
the tool runs) and starts the clock; leaving it builds the ``ToolCall`` and
emits it. Used as a decorator, every call of the function gets a fresh scope.

With an encoder thread (memory durability, the default) the scope ends without
building anything: it checks what the caller set on it (the outcome fields, with a
validator of just those fields, derived from the contract; the tool's static fields
once per :class:`ToolSpec`), snapshots ``params`` as JSON text, and queues *itself*;
the encoder thread builds the fields (:meth:`ToolCallScope.materialize`), the
event id and the event, and settles ``scope.event``. Anything the fast check
does not pass takes the generic path (the reduced check of every field, and the
full pipeline on the caller's thread when that refuses it, naming the field).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from time import perf_counter, time
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_json

from agentstream.core.catalog import AGENT_EVENTS
from agentstream.emitter._callsite import (
    call_site,
    fields_check,
    placeholder,
    plain_check,
    settle,
)
from agentstream.emitter._context import RunContext, active_span, current_context, trace_of
from agentstream.schemas import CallStatus, ContractError, ErrorClass, Retention, ToolCall
from agentstream.schemas._base import new_uuid

if TYPE_CHECKING:
    from agentstream.emitter._core import Deferred, EmitterCore

__all__ = ["ToolCallScope", "ToolSpec", "current_tool_call"]

F = TypeVar("F", bound=Callable[..., Any])
_log: Final = logging.getLogger("agentstream.emitter")

#: fields the scope made valid itself: the run context's ids (checked by run_context),
#: the active trace's ids, the measured latency
_TRUSTED: Final = frozenset(
    {"tenant_id", "user_id", "agent_id", "agent_version", "run_id", "trace_id", "span_id"}
    | {"latency_ms"}
)
_TRUSTED_BUT_RUN: Final = _TRUSTED - {"run_id"}

#: what the caller may set on a scope, checked when it ends (in this order)
_OUTCOME: Final = (
    "status",
    "error_class",
    "error_code",
    "result_summary",
    "output_valid",
    "fallback_used",
    "params",
)
#: where the fields redaction rewrites are in a scope's ``_ended`` (their length bounds
#: the encoded size; each is one of the _OUTCOME fields)
_SIZED: Final = tuple(2 + _OUTCOME.index(name) for name in AGENT_EVENTS[ToolCall].free_text)
#: guards a placeholder made for ``scope.event``; the event id made lazily
_SHOWN: Final = threading.Lock()
_ID: Final = threading.Lock()

#: the outcome fields' checks without pydantic (None: pydantic checks that field)
_PLAIN: Final = {name: plain_check(ToolCall, name) for name in _OUTCOME}
#: JSON scalars a flat ``params`` dict is copied with (immutable: the copy is a snapshot)
_SCALARS: Final = frozenset({int, float, bool, type(None)})
#: most characters a JSON scalar other than text takes (a bounded int, a float)
_SCALAR_CHARS: Final = 24
#: a flat ``params`` dict whose JSON may be longer is serialised at the call site (the
#: exact length then decides whether it fits)
_FLAT_MAX: Final = 8192

_SCOPE: contextvars.ContextVar[ToolCallScope | None] = contextvars.ContextVar(
    "agentstream_tool_call", default=None
)


def _flat_copy(params: dict[Any, Any]) -> tuple[dict[str, Any], int] | None:
    """A copy of a dict of JSON scalars with text keys, and a bound on its JSON text's
    length; None for any other dict (nested, or a value JSON cannot hold as it is)."""
    bound = 2
    for key, value in params.items():
        if type(key) is not str:
            return None
        kind = type(value)
        if kind is str:
            bound += 6 * len(value) + 3  # each character escaped at worst (\uXXXX)
        elif kind in _SCALARS and (kind is not int or -(2**63) <= value < 2**64):
            bound += _SCALAR_CHARS
        else:
            return None
        bound += 6 * len(key) + 4
    return params.copy(), bound


def current_tool_call() -> ToolCallScope | None:
    """The innermost tool-call scope active in this context (e.g. inside a ``@traced`` function)."""
    return _SCOPE.get()


class ToolSpec:
    """How a tool is called (the same for many calls): name, timeout, side effects.

    ``static`` holds the fields that differ from the model's defaults (fields left
    out are not validated again: faster).
    """

    __slots__ = (
        "_checked",
        "atomic",
        "attempt",
        "idempotent",
        "retention",
        "static",
        "timeout_ms",
        "tool",
    )

    def __init__(
        self,
        tool: str,
        timeout_ms: float | None = None,
        attempt: int = 1,
        idempotent: bool = False,
        atomic: bool = False,
        retention: Retention | str = Retention.BUSINESS,
    ) -> None:
        self.tool = tool
        self.timeout_ms = timeout_ms
        self.attempt = attempt
        self.idempotent = idempotent
        self.atomic = atomic
        self.retention = retention
        static: dict[str, Any] = {"tool": tool}
        if timeout_ms is not None:
            static["timeout_ms"] = timeout_ms
        if attempt != 1:
            static["attempt"] = attempt
        if idempotent is not False:
            static["idempotent"] = idempotent
        if atomic is not False:
            static["atomic"] = atomic
        if retention != Retention.BUSINESS:
            static["retention"] = retention
        self.static = static
        self._checked: bool | None = None

    def checked(self) -> bool:
        """Whether ``static`` passes the call-site check of ``ToolCall`` (run once)."""
        checked = self._checked
        if checked is None:
            try:
                call_site(ToolCall).validate(dict(self.static))
            except ValidationError:
                checked = False
            else:
                checked = True
            self._checked = checked
        return checked


class ToolCallScope:
    """One tool call being measured; set the outcome fields on it before it ends.

    Fields: ``status`` (SUCCESS; set ``"PARTIAL"`` for a partial answer),
    ``error_class``/``error_code`` (see :meth:`fail`), ``result_summary``,
    ``output_valid``, ``fallback_used``, ``params``. After the scope ends,
    ``event`` holds the ``ToolCall`` that was emitted.
    """

    #: the event a scope emits (what the encoder thread builds from it)
    event_type: ClassVar[type[ToolCall]] = ToolCall
    # class-level defaults: a scope only stores what the call changes (cheaper to create)
    status: CallStatus | str = CallStatus.SUCCESS
    error_class: ErrorClass | str = ErrorClass.NONE
    error_code: str | None = None
    result_summary: str | None = None
    output_valid: bool = True
    fallback_used: bool = False
    _t0: float | None = None
    _token: contextvars.Token[ToolCallScope | None] | None = None
    _ctx: RunContext
    #: the active span's context when the scope started (formatted off-thread)
    _span: Any = None
    #: (latency_ms, end time as a POSIX timestamp, then the _OUTCOME values) as it ended
    _ended: tuple[Any, ...] | None = None
    #: the event as sent (or, synchronously, as returned by the emitter)
    _sent: ToolCall | None = None
    #: a placeholder handed out by ``event`` before the encoder thread sent the event
    _shown: ToolCall | None = None
    _event_id: str | None = None

    def __init__(
        self, emitter: EmitterCore, spec: ToolSpec, params: Any = None, run_id: str | None = None
    ) -> None:
        self._emitter = emitter
        self._spec = spec
        self.params: Any = params
        self._run_id = run_id

    def __repr__(self) -> str:
        return f"ToolCallScope(tool={self._spec.tool!r}, status={self.status!s})"

    @property
    def tool(self) -> str:
        """The tool's name."""
        return self._spec.tool

    @property
    def event(self) -> ToolCall | None:
        """The ``ToolCall`` emitted when the scope ended (None before): the event as sent
        once encoded (until then, an event holding the values given)."""
        sent = self._sent
        if sent is not None or self._ended is None:
            return sent
        with _SHOWN:  # made once, whoever asks first
            shown = self._shown
            if shown is None:
                data, _ = self.materialize()
                shown = self._shown = placeholder(ToolCall, data)
        sent = self._sent  # after _shown is set: settle() sees one or this sees the other
        if sent is not None:
            settle(shown, sent)
        return shown

    def fail(
        self,
        error: BaseException | ErrorClass | str = ErrorClass.NON_RETRYABLE,
        code: str | None = None,
    ) -> None:
        """Mark the call failed without raising: from a handled exception, or a class and code."""
        if isinstance(error, BaseException):
            error_class, error_code = self._emitter.classify(error)
        else:
            try:
                error_class, error_code = ErrorClass(error), None
            except ValueError:
                known = ", ".join(member.value for member in ErrorClass)
                raise ContractError(
                    f"ToolCall.error_class: {error!r} is not one of {known}"
                ) from None
        self.status = CallStatus.ERROR
        self.error_class = error_class
        self.error_code = code if code is not None else error_code

    # -- the shared start / finish -------------------------------------------------------------

    def _start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("a tool_call scope is used once; call emitter.tool_call() again")
        ctx = current_context()
        if ctx is None:
            raise self._emitter.no_run_context("ToolCall", self._run_id)
        self._ctx = ctx
        self._span = active_span()
        self._token = _SCOPE.set(self)
        self._t0 = perf_counter()

    def _finish(self, exc: BaseException | None) -> None:
        latency_ms = (perf_counter() - (self._t0 or 0.0)) * 1000.0
        ended_at = time()
        token = self._token
        if token is not None:
            self._token = None
            # not contextlib.suppress: an object per call on the agent's hot path
            try:  # noqa: SIM105
                _SCOPE.reset(token)
            except ValueError:  # left in another context (e.g. a generator): not ours
                pass
        status, error_class, error_code = self.status, self.error_class, self.error_code
        if exc is not None:
            found_class, found_code = self._emitter.classify(exc)
            status = CallStatus.ERROR
            if error_class in (ErrorClass.NONE, "NONE"):
                error_class = found_class
            if error_code is None:
                error_code = found_code
        ended = (
            latency_ms,
            ended_at,
            status,
            error_class,
            error_code,
            self.result_summary,
            self.output_valid,
            self.fallback_used,
            self.params,
        )
        emitter = self._emitter
        try:
            submit = emitter.submit_deferred
            if submit is not None and self._defer(ended, submit):
                return
            self._ended = ended
            data, sampled = self._fields(ended)
            trusted = _TRUSTED if self._run_id is None else _TRUSTED_BUT_RUN
            self._sent = emitter.emit_data(ToolCall, data, sampled, trusted)
        except Exception as problem:
            if exc is None:
                raise
            # never hide the tool's own exception
            _log.error(
                "agentstream: the ToolCall of %r was not emitted: %s", self._spec.tool, problem
            )
            exc.add_note(f"agentstream: the ToolCall event was not emitted: {problem}")

    def _defer(self, ended: tuple[Any, ...], submit: Callable[[Deferred, int], bool]) -> bool:
        """Check what the caller set, snapshot ``params`` and ``submit`` this scope to the
        encoder thread; False when something needs the generic path (which names it)."""
        if not self._spec.checked():
            return False
        latency_ms, ended_at, status, error_class, error_code, summary, valid, fallback, params = (
            ended
        )
        # only what differs from the defaults is checked (the defaults are valid), by a
        # validator of just those fields (params: JSON text made here, checked off-thread)
        given = _outcome_fields(error_class, error_code, summary, valid, fallback)
        if status is not CallStatus.SUCCESS:
            given["status"] = status
        for name, value in given.items():
            check = _PLAIN[name]
            if check is None or not check(value):  # pydantic tells (it is slower)
                try:
                    fields_check(ToolCall, tuple(given))(given)
                except ValidationError:
                    return False
                break
        size = 0
        if params is not None and type(params) is not str:
            # a snapshot: the caller may change its dict once the scope ended; a flat dict
            # of JSON scalars is copied (serialised on the encoder thread), others serialised
            found = _flat_copy(params) if type(params) is dict else None
            if found is not None and found[1] <= _FLAT_MAX:
                params, size = found
            elif isinstance(params, dict | list | tuple):
                try:
                    fallback_of = repr if self._emitter.redactor is not None else None
                    params = to_json(params, fallback=fallback_of, inf_nan_mode="null").decode()
                except PydanticSerializationError:
                    return False
            else:
                return False
            ended = (
                latency_ms,
                ended_at,
                status,
                error_class,
                error_code,
                summary,
                valid,
                fallback,
                params,
            )
        for at in _SIZED:
            value = ended[at]
            if type(value) is str:
                size += len(value)
        self._ended = ended
        return submit(self, size)

    def _fields(self, ended: tuple[Any, ...]) -> tuple[dict[str, Any], bool]:
        """The event's fields as the scope ``ended`` (no id, no time), and the trace's
        sampled flag."""
        _, _, status, error_class, error_code, summary, output_valid, fallback, params = ended
        data = self._ctx.fields()
        if self._run_id is not None:
            data["run_id"] = self._run_id
        sampled = True
        if self._span is not None:
            data["trace_id"], data["span_id"], sampled = trace_of(self._span)
        data.update(self._spec.static)
        data["status"] = status
        data["latency_ms"] = ended[0]
        data.update(_outcome_fields(error_class, error_code, summary, output_valid, fallback))
        if params is not None:
            data["params"] = params
        return data, sampled

    # -- the encoder thread's side (a deferred job) ----------------------------------------------

    def materialize(self) -> tuple[dict[str, Any], bool]:
        """The event's fields, with its id (made once) and time; the sampled flag."""
        ended = self._ended
        if ended is None:  # pragma: no cover - queued only once it ended
            raise RuntimeError("the tool_call scope has not ended")
        data, sampled = self._fields(ended)
        params = data.get("params")
        if type(params) is dict:  # a flat copy (see _defer): JSON text, as it is sent
            data["params"] = to_json(params, inf_nan_mode="null").decode()
        event_id = self._event_id
        if event_id is None:
            with _ID:
                event_id = self._event_id
                if event_id is None:
                    event_id = self._event_id = new_uuid()
        data["event_id"] = event_id
        data["event_time"] = datetime.fromtimestamp(ended[1], UTC)
        return data, sampled

    def settle(self, event: ToolCall) -> None:
        """The encoder thread sent ``event``: ``scope.event`` is it from now on."""
        self._sent = event
        shown = self._shown  # after _sent is set: see the ``event`` property
        if shown is not None:
            settle(shown, event)

    # -- protocols -----------------------------------------------------------------------------

    def __enter__(self) -> ToolCallScope:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> ToolCallScope:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finish(exc)

    def __call__(self, fn: F) -> F:
        """Decorate ``fn`` (sync or async): each call runs in a fresh scope like this one."""
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"cannot trace generator function {fn.__qualname__}: wrap the code that "
                "calls the tool in 'with emitter.tool_call(...)' instead"
            )
        emitter, spec, params, run_id = self._emitter, self._spec, self.params, self._run_id
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                async with ToolCallScope(emitter, spec, params, run_id):
                    return await fn(*args, **kwargs)

            return traced_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with ToolCallScope(emitter, spec, params, run_id):
                return fn(*args, **kwargs)

        return traced  # type: ignore[return-value]


def _outcome_fields(
    error_class: ErrorClass,
    error_code: str | None,
    summary: str | None,
    valid: bool | None,
    fallback: bool,
) -> dict[str, Any]:
    """The outcome fields a scope set away from their defaults (checked on the caller's
    thread, then sent as they are)."""
    given: dict[str, Any] = {}
    if error_class is not ErrorClass.NONE:
        given["error_class"] = error_class
    if error_code is not None:
        given["error_code"] = error_code
    if summary is not None:
        given["result_summary"] = summary
    if valid is not True:
        given["output_valid"] = valid
    if fallback is not False:
        given["fallback_used"] = fallback
    return given
