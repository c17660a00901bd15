"""The base of every contract model, the constrained field types, validation errors.

Every model is frozen and forbids unknown fields. Constructing one (``ToolCall(...)``,
``ToolCall.model_validate(...)``, :func:`validate_event`) raises
:class:`~schemas.errors.EventValidationError` - a :class:`~schemas.errors.ContractError`
carrying pydantic's details - instead of pydantic's own ``ValidationError``.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticSerializationError, from_json, to_json

from agentstream.schemas.errors import EventValidationError

__all__ = [
    "INT32_MAX",
    "INT64_MAX",
    "Record",
    "validate_event",
]

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

#: longest id (tenant, user, agent, run, trace ...) accepted
MAX_ID_CHARS = 256
#: longest name (tool, model, provider, metric ...) accepted
MAX_NAME_CHARS = 256
#: longest short code (error code, error category)
MAX_CODE_CHARS = 128
#: longest free-text reason, comment or message
MAX_TEXT_CHARS = 4096
#: longest redacted ``params`` JSON text
MAX_PARAMS_CHARS = 64 * 1024
#: longest redacted ``result_summary``
MAX_SUMMARY_CHARS = 16 * 1024
#: largest raw dead-letter payload (1 MiB: Kafka's default max message size)
MAX_RAW_BYTES = 1024 * 1024


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the default of every timestamp field)."""
    return datetime.now(UTC)


_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)
# Not for secrets: event ids only need to be unique. Seeded from os.urandom, and
# re-seeded in a forked child so parent and child never share a sequence.
_rng = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_rng.seed)


def new_uuid() -> str:
    """A random (version 4) UUID as canonical lowercase text; ~4x faster than ``uuid.uuid4()``."""
    h = ((_rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _uuid_text(value: Any) -> Any:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _json_text(value: Any) -> Any:
    """``params``: JSON text is checked (fast, in Rust); dicts and lists are serialised."""
    if isinstance(value, str):
        if len(value) > MAX_PARAMS_CHARS:
            return value  # the length constraint reports it, without parsing
        try:
            from_json(value, allow_inf_nan=False)
        except ValueError as exc:
            raise ValueError(f"must be JSON text: {exc}") from exc
        return value
    if isinstance(value, dict | list | tuple | Mapping):
        try:
            return to_json(value, inf_nan_mode="null").decode()
        except PydanticSerializationError as exc:
            raise ValueError(f"is not JSON-serializable: {exc}") from exc
    return value


#: timezone-aware datetime, normalised to UTC (Avro ``timestamp-micros``)
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
#: a UUID as canonical lowercase text (Avro ``string`` with logicalType ``uuid``);
#: ``uuid.UUID`` instances and upper-case text are accepted and normalised
UuidText = Annotated[str, StringConstraints(pattern=_UUID_PATTERN), BeforeValidator(_uuid_text)]
#: a required identifier: 1..256 characters
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]
Code = Annotated[str, StringConstraints(min_length=1, max_length=MAX_CODE_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
#: JSON text (a dict or list is serialised to compact JSON)
ParamsJson = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_PARAMS_CHARS), BeforeValidator(_json_text)
]
Summary = Annotated[str, StringConstraints(max_length=MAX_SUMMARY_CHARS)]
#: a finite, non-negative double (milliseconds, dollars)
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
#: a non-negative Avro ``long``
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
#: a non-negative Avro ``int``
Count32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
RawBytes = Annotated[bytes, Field(max_length=MAX_RAW_BYTES)]
#: replacements made by redaction, by kind (``[REDACTED:<kind>]``): Avro ``map<long>``
Redactions = dict[str, Count]


class Record(BaseModel):
    """Base of the contract models: frozen, no unknown fields, contract errors.

    ``avro_name`` is the Avro record name (``ToolCall``); the Avro schema of the
    same name in ``schemas/*.avsc`` is the source of truth and a test keeps the
    two field-for-field identical.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    avro_name: ClassVar[str] = ""

    def __init__(self, /, **data: Any) -> None:
        # what BaseModel.__init__ does, minus a frame: this is the producer's hot path
        try:
            self.__pydantic_validator__.validate_python(data, self_instance=self)
        except ValidationError as exc:
            raise contract_error(type(self), exc) from exc

    # pydantic must keep validating directly, not through this __init__
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate ``obj``; raises :class:`EventValidationError` on bad values."""
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise contract_error(cls, exc) from exc

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """Validate JSON text; raises :class:`EventValidationError` on bad values."""
        try:
            return super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            raise contract_error(cls, exc) from exc

    def to_avro(self) -> dict[str, Any]:
        """The Avro datum of this record: field name → value, ready for fastavro."""
        return dict(self.__dict__)


def contract_error(cls: type[BaseModel], exc: ValidationError) -> EventValidationError:
    """The contract's error for pydantic's ``exc`` raised validating a ``cls``."""
    name = getattr(cls, "avro_name", "") or cls.__name__
    return EventValidationError(name, [dict(err) for err in exc.errors(include_url=False)])


class AgentEvent(Record):
    """The context every agent event carries (ToolCall, ModelCall, StateTransition, ...).

    ``event_id`` defaults to a fresh UUID4 and ``event_time`` to now (UTC), so a
    producer rarely sets either.
    """

    event_id: UuidText = Field(default_factory=new_uuid)
    event_time: UtcDatetime = Field(default_factory=utc_now)
    tenant_id: Id
    user_id: Id
    agent_id: Id
    agent_version: Id
    run_id: Id
    trace_id: Code | None = None
    span_id: Code | None = None

    def __hash__(self) -> int:
        # equal events have equal ids; ``redactions`` (a dict) has no hash of its own
        return hash((type(self), self.event_id))


R = TypeVar("R", bound=Record)


def validate_event(
    model_cls: type[R], data: Mapping[str, Any] | None = None, /, **fields: Any
) -> R:
    """Build a ``model_cls`` from ``data`` and/or keyword fields (keywords win).

    Raises :class:`EventValidationError` (a ``ContractError``) naming each bad field.
    """
    values = {**data, **fields} if data is not None else fields
    return model_cls.model_validate(values)
