"""The contract-level errors; the root of agentstream's exception tree.

``schemas`` depends on nothing else in the project, so the root class and the
errors the contract layer raises live here; :mod:`agentstream.core.errors`
re-exports them and documents the whole tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AgentstreamError",
    "CodecError",
    "ContractError",
    "EventValidationError",
    "SchemaCompatibilityError",
    "SchemaRegistryError",
]


class AgentstreamError(Exception):
    """Base class of every error agentstream raises on purpose."""


class ContractError(AgentstreamError, ValueError):
    """An event does not satisfy its contract (a field is missing or has a bad value)."""


class EventValidationError(ContractError):
    """Field values of an event are invalid; wraps :class:`pydantic.ValidationError`.

    ``pydantic_core.ValidationError`` cannot be subclassed, so the original is
    chained as ``__cause__`` and its details are kept: :meth:`errors` returns
    pydantic's error dicts, :attr:`fields` the dotted location of each bad
    field, and the message names them, e.g.
    ``ToolCall.latency_ms: Input should be greater than or equal to 0``.
    """

    def __init__(self, record: str, errors: Sequence[dict[str, Any]]) -> None:
        self.record = record
        self._errors = [dict(err) for err in errors]
        self.fields: tuple[str, ...] = tuple(
            _location(record, err.get("loc", ())) for err in self._errors
        )
        problems = "; ".join(
            f"{field}: {err.get('msg', 'invalid value')}"
            for field, err in zip(self.fields, self._errors, strict=True)
        )
        super().__init__(problems or f"{record}: invalid event")

    def errors(self) -> list[dict[str, Any]]:
        """pydantic's error details (``type``, ``loc``, ``msg``, ``input``, ``ctx``)."""
        return [dict(err) for err in self._errors]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.record, self._errors))


def _location(record: str, loc: Sequence[int | str]) -> str:
    parts = [record]
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]"
        else:
            parts.append(part)
    return ".".join(parts)


class CodecError(AgentstreamError, ValueError):
    """Bytes cannot be encoded or decoded (truncated, unknown schema, wrong framing)."""


class SchemaRegistryError(CodecError):
    """The schema registry failed: unreachable, refused a schema, or has no such id."""


class SchemaCompatibilityError(AgentstreamError):
    """A schema change would leave data written with an older version unreadable."""
