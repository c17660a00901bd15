"""The tool-call scope: one implementation for ``with``, ``async with`` and decorators.

``emitter.tool_call("search", params=...)`` returns a :class:`ToolCallScope`.
Entering it binds the run's ids (a missing :func:`run_context` fails here, before
the tool runs) and starts the clock; leaving it builds the ``ToolCall`` and
emits it. Used as a decorator, every call of the function gets a fresh scope.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from agentstream.schemas import CallStatus, ContractError, ErrorClass, Retention, ToolCall

if TYPE_CHECKING:
    from agentstream.emitter._core import EmitterCore

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

_SCOPE: contextvars.ContextVar[ToolCallScope | None] = contextvars.ContextVar(
    "agentstream_tool_call", default=None
)


def current_tool_call() -> ToolCallScope | None:
    """The innermost tool-call scope active in this context (e.g. inside a ``@traced`` function)."""
    return _SCOPE.get()


class ToolSpec:
    """How a tool is called (the same for many calls): name, timeout, side effects.

    ``static`` holds the fields that differ from the model's defaults (fields left
    out are not validated again: faster).
    """

    __slots__ = ("atomic", "attempt", "idempotent", "retention", "static", "timeout_ms", "tool")

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


class ToolCallScope:
    """One tool call being measured; set the outcome fields on it before it ends.

    Fields: ``status`` (SUCCESS; set ``"PARTIAL"`` for a partial answer),
    ``error_class``/``error_code`` (see :meth:`fail`), ``result_summary``,
    ``output_valid``, ``fallback_used``, ``params``. After the scope ends,
    ``event`` holds the ``ToolCall`` that was emitted.
    """

    # class-level defaults: a scope only stores what the call changes (cheaper to create)
    status: CallStatus | str = CallStatus.SUCCESS
    error_class: ErrorClass | str = ErrorClass.NONE
    error_code: str | None = None
    result_summary: str | None = None
    output_valid: bool = True
    fallback_used: bool = False
    event: ToolCall | None = None
    _t0: float | None = None
    _token: contextvars.Token[ToolCallScope | None] | None = None
    _data: dict[str, Any]
    _sampled: bool = True

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
        self._data, self._sampled = self._emitter.context_fields("ToolCall", None, self._run_id)
        self._token = _SCOPE.set(self)
        self._t0 = perf_counter()

    def _finish(self, exc: BaseException | None) -> None:
        latency_ms = (perf_counter() - (self._t0 or 0.0)) * 1000.0
        if self._token is not None:
            # left in another context (e.g. a generator): not ours to reset
            with contextlib.suppress(ValueError):
                _SCOPE.reset(self._token)
            self._token = None
        status, error_class, error_code = self.status, self.error_class, self.error_code
        if exc is not None:
            found_class, found_code = self._emitter.classify(exc)
            status = CallStatus.ERROR
            if error_class in (ErrorClass.NONE, "NONE"):
                error_class = found_class
            if error_code is None:
                error_code = found_code
        spec = self._spec
        data = self._data
        data.update(spec.static)
        data["status"] = status
        data["latency_ms"] = latency_ms
        if error_class != ErrorClass.NONE:
            data["error_class"] = error_class
        if error_code is not None:
            data["error_code"] = error_code
        if self.fallback_used is not False:
            data["fallback_used"] = self.fallback_used
        if self.output_valid is not True:
            data["output_valid"] = self.output_valid
        if self.result_summary is not None:
            data["result_summary"] = self.result_summary
        if self.params is not None:
            data["params"] = self.params
        trusted = _TRUSTED if self._run_id is None else _TRUSTED_BUT_RUN
        if exc is None:
            self.event = self._emitter.emit_data(ToolCall, data, self._sampled, trusted)
            return
        try:
            self.event = self._emitter.emit_data(ToolCall, data, self._sampled, trusted)
        except Exception as problem:  # never hide the tool's own exception
            _log.error("agentstream: the ToolCall of %r was not emitted: %s", spec.tool, problem)
            exc.add_note(f"agentstream: the ToolCall event was not emitted: {problem}")

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
