"""What ``emit`` checks on the caller's thread when the encoder thread does the rest.

:func:`call_site_check` validates an event's fields against a reduced form of its
contract, derived from the model itself (one fact, written once in the schema):
every field with its type, enum and numeric bounds and string lengths, the
required ones required, unknown ones refused — but no function validators (the
UUID pattern, the ``params`` JSON check, the UTC conversion, the model-level rules),
which are the expensive part and run on the encoder thread with the full model.
pydantic-core runs the reduced check in Rust without calling back into Python.

:func:`placeholder` builds the event ``emit`` returns at once: an instance of the
model holding the checked values and the defaults; the encoder thread swaps in the
validated, redacted event as sent (:func:`settle`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Final, NotRequired

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WrapValidator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typing_extensions import TypedDict

from agentstream.schemas import AgentEvent

__all__ = ["CallSite", "call_site", "call_site_check", "placeholder", "settle"]

#: validators that may change a value's type: such a field is only checked off-thread
_TRANSFORMING: Final = (BeforeValidator, WrapValidator, PlainValidator)


def _reduced(field: FieldInfo) -> Any:
    """``field``'s type with its bounds, without function validators or patterns."""
    if any(isinstance(m, _TRANSFORMING) for m in field.metadata):
        return Any
    kept: list[Any] = []
    for m in field.metadata:
        if isinstance(m, AfterValidator):
            continue
        if isinstance(m, StringConstraints) and m.pattern is not None:
            m = dataclasses.replace(m, pattern=None)
        kept.append(m)
    if not kept:
        return field.annotation
    return Annotated[(field.annotation, *kept)]


@dataclasses.dataclass(frozen=True, slots=True)
class CallSite:
    """The reduced check and the defaults of one event type."""

    #: checks the fields given (none required: see ``required``)
    validate: Callable[[dict[str, Any]], dict[str, Any]]
    required: frozenset[str]
    #: constant defaults (copied into every placeholder)
    defaults: dict[str, Any]
    #: fields whose default is a factory (called per placeholder)
    factories: tuple[tuple[str, Callable[[], Any]], ...]


_SITES: dict[type[AgentEvent], CallSite] = {}


def call_site(event_type: type[AgentEvent]) -> CallSite:
    """The :class:`CallSite` of ``event_type`` (built once per type)."""
    site = _SITES.get(event_type)
    if site is not None:
        return site
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    factories: list[tuple[str, Callable[[], Any]]] = []
    for name, field in event_type.model_fields.items():
        fields[name] = NotRequired[_reduced(field)]
        if field.default_factory is not None:
            factories.append((name, field.default_factory))  # type: ignore[arg-type]
        elif field.default is not PydanticUndefined:
            defaults[name] = field.default
    # typing_extensions' TypedDict: pydantic needs it before Python 3.12
    make: Any = TypedDict
    shape = make(f"{event_type.__name__}AtCallSite", fields)
    shape.__pydantic_config__ = ConfigDict(extra="forbid")
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(shape)
    required = frozenset(n for n, f in event_type.model_fields.items() if f.is_required())
    site = CallSite(adapter.validate_python, required, defaults, tuple(factories))
    _SITES[event_type] = site
    return site


def call_site_check(
    event_type: type[AgentEvent], data: dict[str, Any], trusted: frozenset[str] = frozenset()
) -> dict[str, Any] | None:
    """``data`` checked and normalised (enums, numbers) in place, or None when the
    reduced contract refuses it (the caller then runs the full pipeline, which names
    the field). Fields in ``trusted`` were made valid by the emitter itself (the run
    context's ids, the measured latency): not checked again."""
    site = call_site(event_type)
    if not site.required <= data.keys():
        return None
    given = {name: value for name, value in data.items() if name not in trusted}
    try:
        data.update(site.validate(given))
    except ValidationError:
        return None
    return data


def placeholder(event_type: type[AgentEvent], values: dict[str, Any]) -> AgentEvent:
    """An ``event_type`` holding ``values`` and the defaults, not validated further."""
    site = call_site(event_type)
    state = {**site.defaults, **values}
    for name, factory in site.factories:
        if name not in state:
            state[name] = factory()
    event = object.__new__(event_type)
    object.__setattr__(event, "__dict__", state)
    object.__setattr__(event, "__pydantic_fields_set__", set(values))
    object.__setattr__(event, "__pydantic_extra__", None)
    object.__setattr__(event, "__pydantic_private__", None)
    return event


def settle(placeholder_event: AgentEvent, sent: AgentEvent) -> None:
    """Make the placeholder ``emit`` returned equal the event as sent (one swap)."""
    object.__setattr__(placeholder_event, "__dict__", sent.__dict__)
    object.__setattr__(placeholder_event, "__pydantic_fields_set__", sent.model_fields_set)
