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
from dataclasses import dataclass
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from schemas import CallStatus, ErrorClass, Retention, ToolCall

if TYPE_CHECKING:
    from agentstream._core import EmitterCore

__all__ = ["ToolCallScope", "ToolSpec", "current_tool_call"]

F = TypeVar("F", bound=Callable[..., Any])
_log: Final = logging.getLogger("agentstream.emitter")

_SCOPE: contextvars.ContextVar[ToolCallScope | None] = contextvars.ContextVar(
    "agentstream_tool_call", default=None
)


def current_tool_call() -> ToolCallScope | None:
    """The innermost tool-call scope active in this context (e.g. inside a ``@traced`` function)."""
    return _SCOPE.get()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What a tool-call scope was opened with."""

    tool: str
    params: Any
    timeout_ms: float | None
    attempt: int
    idempotent: bool
    atomic: bool
    retention: Retention | str
    run_id: str | None


class ToolCallScope:
    """One tool call being measured; set the outcome fields on it before it ends.

    Fields: ``status`` (SUCCESS; set ``"PARTIAL"`` for a partial answer),
    ``error_class``/``error_code`` (see :meth:`fail`), ``result_summary``,
    ``output_valid``, ``fallback_used``, ``params``. After the scope ends,
    ``event`` holds the ``ToolCall`` that was emitted.
    """

    __slots__ = (
        "_data",
        "_emitter",
        "_sampled",
        "_spec",
        "_t0",
        "_token",
        "error_class",
        "error_code",
        "event",
        "fallback_used",
        "output_valid",
        "params",
        "result_summary",
        "status",
    )

    def __init__(self, emitter: EmitterCore, spec: ToolSpec) -> None:
        self._emitter = emitter
        self._spec = spec
        self._t0: float | None = None
        self._data: dict[str, Any] = {}
        self._sampled = True
        self._token: contextvars.Token[ToolCallScope | None] | None = None
        self.status: CallStatus | str = CallStatus.SUCCESS
        self.error_class: ErrorClass | str = ErrorClass.NONE
        self.error_code: str | None = None
        self.result_summary: str | None = None
        self.output_valid = True
        self.fallback_used = False
        self.params: Any = spec.params
        self.event: ToolCall | None = None

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
            error_class, error_code = ErrorClass(error), None
        self.status = CallStatus.ERROR
        self.error_class = error_class
        self.error_code = code if code is not None else error_code

    # -- the shared start / finish -------------------------------------------------------------

    def _start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("a tool_call scope is used once; call emitter.tool_call() again")
        self._data, self._sampled = self._emitter.context_fields("ToolCall", {}, self._spec.run_id)
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
        data["tool"] = spec.tool
        data["status"] = status
        data["error_class"] = error_class
        data["error_code"] = error_code
        data["latency_ms"] = latency_ms
        data["timeout_ms"] = spec.timeout_ms
        data["attempt"] = spec.attempt
        data["fallback_used"] = self.fallback_used
        data["output_valid"] = self.output_valid
        data["idempotent"] = spec.idempotent
        data["atomic"] = spec.atomic
        data["retention"] = spec.retention
        data["result_summary"] = self.result_summary
        if self.params is not None:
            data["params"] = self.params
        if exc is None:
            self.event = self._emitter.emit_data(ToolCall, data, self._sampled)
            return
        try:
            self.event = self._emitter.emit_data(ToolCall, data, self._sampled)
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
        emitter, spec = self._emitter, self._spec
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def traced_async(*args: Any, **kwargs: Any) -> Any:
                async with ToolCallScope(emitter, spec):
                    return await fn(*args, **kwargs)

            return traced_async  # type: ignore[return-value]

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            with ToolCallScope(emitter, spec):
                return fn(*args, **kwargs)

        return traced  # type: ignore[return-value]
