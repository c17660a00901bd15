"""What ``emit`` checks on the caller's thread when the encoder thread does the rest.

:func:`accept` validates an event's fields against a reduced form of its
contract, derived from the model itself (one fact, written once in the schema):
every field with its type, enum and numeric bounds and string lengths, the
required ones required, unknown ones refused — but no function validators (the
UUID pattern, the ``params`` JSON check, the UTC conversion, the model-level rules),
which are the expensive part and run on the encoder thread with the full model.
pydantic-core runs the reduced check in Rust without calling back into Python.

:func:`accept` also builds the event ``emit`` returns at once: an instance of the
model holding the checked values and the defaults (:func:`copy_of` for a built
event); the encoder thread swaps in the validated, redacted event as sent
(:func:`settle`).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from enum import StrEnum
from types import UnionType
from typing import (
    Annotated,
    Any,
    Final,
    NotRequired,
    Protocol,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
)

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

from agentstream.core.catalog import AGENT_EVENTS
from agentstream.schemas import AgentEvent

__all__ = [
    "CallSite",
    "Deferred",
    "accept",
    "call_site",
    "copy_of",
    "fields_check",
    "placeholder",
    "plain_check",
    "settle",
]

E = TypeVar("E", bound=AgentEvent)

_set: Final = object.__setattr__
#: filled in before the check (``emit`` gives every event its id and time at the call)
_ALWAYS_GIVEN: Final = frozenset({"event_id", "event_time"})
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
    #: the fields redaction rewrites (their length bounds the encoded size)
    free_text: tuple[str, ...]
    #: constant defaults (copied into every placeholder)
    defaults: dict[str, Any]
    #: fields whose default is a factory (called per placeholder)
    factories: tuple[tuple[str, Callable[[], Any]], ...]


class Deferred(Protocol):
    """An event whose fields are built on the encoder thread (an ended tool-call scope)."""

    @property
    def event_type(self) -> type[AgentEvent]:
        """The type of the event."""
        ...

    def materialize(self) -> tuple[dict[str, Any], bool]:
        """The event's fields (all checked at the call site) and the trace's sampled flag."""
        ...

    def settle(self, event: Any) -> None:
        """``event`` was sent (validated, redacted, encoded)."""
        ...


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
        if name in _ALWAYS_GIVEN:
            continue
        if field.default_factory is not None:
            # a factory of the validated data: none in the contracts; refuse, not guess
            if field.default_factory_takes_validated_data:
                raise TypeError(f"{event_type.__name__}.{name}: a default factory taking data")
            factories.append((name, cast("Callable[[], Any]", field.default_factory)))
        elif field.default is not PydanticUndefined:
            defaults[name] = field.default
    # typing_extensions' TypedDict: pydantic needs it before Python 3.12
    make: Any = TypedDict
    shape = make(f"{event_type.__name__}AtCallSite", fields)
    shape.__pydantic_config__ = ConfigDict(extra="forbid")
    adapter: TypeAdapter[dict[str, Any]] = TypeAdapter(shape)
    required = frozenset(n for n, f in event_type.model_fields.items() if f.is_required())
    free_text = AGENT_EVENTS[event_type].free_text
    # the core validator itself: TypeAdapter.validate_python adds a Python frame
    check = adapter.validator.validate_python
    site = CallSite(check, required, free_text, defaults, tuple(factories))
    _SITES[event_type] = site
    return site


_CHECKS: dict[tuple[type[AgentEvent], tuple[str, ...]], Callable[[dict[str, Any]], Any]] = {}


def fields_check(
    event_type: type[AgentEvent], names: tuple[str, ...]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The reduced check of only the fields ``names`` of ``event_type`` (none required,
    no other allowed): a smaller validator is cheaper to run (built once per pair)."""
    check = _CHECKS.get((event_type, names))
    if check is None:
        fields = {name: NotRequired[_reduced(event_type.model_fields[name])] for name in names}
        make: Any = TypedDict
        shape = make(f"{event_type.__name__}Fields", fields)
        shape.__pydantic_config__ = ConfigDict(extra="forbid")
        check = TypeAdapter(shape).validator.validate_python
        _CHECKS[event_type, names] = check
    return check


def plain_check(event_type: type[AgentEvent], name: str) -> Callable[[Any], bool] | None:
    """A check of field ``name`` without pydantic, derived from its type, for the plain
    cases: text with length bounds only, a bool, a ``StrEnum`` (optional or not). True
    only for values the contract accepts as they are (exact types); None when only
    pydantic can tell. Cheaper, above all the first time after a wait (pydantic-core's
    code is large: out of the CPU's caches, entering it costs tens of µs)."""
    field = event_type.model_fields[name]
    annotation: Any = field.annotation
    metadata: list[Any] = list(field.metadata)
    optional = False
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType) and type(None) in args and len(args) == 2:
        optional = True
        [annotation] = [arg for arg in args if arg is not type(None)]
    if get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    lo, hi = 0, None
    for m in metadata:
        if not isinstance(m, StringConstraints) or annotation is not str:
            return None
        if (m.strip_whitespace, m.to_upper, m.to_lower, m.pattern) != (None,) * 4:
            return None
        lo, hi = m.min_length or 0, m.max_length
    check: Callable[[Any], bool]
    if annotation is str:
        top = sys.maxsize if hi is None else hi
        check = lambda v: type(v) is str and lo <= len(v) <= top  # noqa: E731
    elif annotation is bool:
        check = lambda v: type(v) is bool  # noqa: E731
    elif isinstance(annotation, type) and issubclass(annotation, StrEnum):
        values = frozenset(member.value for member in annotation)
        kind = annotation
        check = lambda v: (type(v) is str or type(v) is kind) and v in values  # noqa: E731
    else:
        return None
    if optional:
        inner = check
        check = lambda v: v is None or inner(v)  # noqa: E731
    return check


def accept(
    event_type: type[E], data: dict[str, Any], trusted: frozenset[str], max_text: int
) -> E | None:
    """Check ``data`` (normalised in place: enums, numbers) and return the placeholder
    of its event; None when the reduced contract refuses it or its free text passes
    ``max_text`` characters (the caller then runs the full pipeline, which names the
    field or the size). Fields in ``trusted`` were made valid by the emitter itself
    (the run context's ids, the measured latency): not checked again."""
    site = _SITES.get(event_type) or call_site(event_type)
    if not site.required <= data.keys():
        return None
    try:
        data.update(site.validate({k: v for k, v in data.items() if k not in trusted}))
    except ValidationError:
        return None
    size = 0
    for name in site.free_text:
        value = data.get(name)
        if type(value) is str:
            size += len(value)
    if size > max_text:
        return None
    return placeholder(event_type, data)


def placeholder(event_type: type[E], data: dict[str, Any]) -> E:
    """An instance of ``event_type`` holding ``data`` (checked) and the defaults."""
    site = _SITES.get(event_type) or call_site(event_type)
    state = site.defaults.copy()
    state.update(data)
    for name, factory in site.factories:
        if name not in state:
            state[name] = factory()
    return _instance(event_type, state, set(data))


def copy_of(event: E) -> E:
    """A placeholder for a built event (the caller keeps its own instance)."""
    return _instance(type(event), event.__dict__.copy(), set(event.model_fields_set))


def _instance(event_type: type[E], state: dict[str, Any], given: set[str]) -> E:
    event: E = object.__new__(event_type)
    _set(event, "__dict__", state)
    _set(event, "__pydantic_fields_set__", given)
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def settle(placeholder_event: AgentEvent, sent: AgentEvent) -> None:
    """Make the placeholder ``emit`` returned equal the event as sent (one swap)."""
    _set(placeholder_event, "__dict__", sent.__dict__)
    _set(placeholder_event, "__pydantic_fields_set__", sent.model_fields_set)
