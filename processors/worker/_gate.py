"""The contract gate: raw record bytes → a validated event, or a dead letter saying why.

Every record read from an input topic passes here. Bytes that do not decode,
an unknown writer schema, a record of the wrong type for the topic, values
that break the contract, or a key that is not the event's ``run_id`` become an
:class:`~schemas.InvalidEvent` (topic, partition, offset, key, the raw bytes, a
human-readable reason, the error type). Its ``invalid_id`` is a UUID5 of
topic/partition/offset, so re-reading the same record after a restart yields
the same dead letter and the idempotent sink stores it once.

Reasons are redacted (:class:`agentstream._redact.Redactor`): a validation error
may quote the offending value. The gate does not re-emit the events it
accepts (the sink reads the input topics itself and redacts ``params`` /
``result_summary`` before storing), so free text of accepted events is not
rewritten here; the only free text the processors publish is the transition
``reason`` on the lifecycle topic, which :meth:`Gate.redact` cleans.
"""

from __future__ import annotations

import uuid
from typing import Final

from agentstream._redact import Redactor
from agentstream.config import Settings
from schemas import (
    DEFAULT_CODEC,
    AvroCodec,
    HttpSchemaRegistry,
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    StateTransition,
    ToolCall,
)
from schemas.errors import AgentstreamError

__all__ = ["INPUT_MODELS", "Gate", "InputEvent", "codec_for", "invalid_id"]

InputEvent = ToolCall | ModelCall | StateTransition | ReviewDecision

#: the record each input stream carries
INPUT_MODELS: Final[dict[str, type[Record]]] = {
    "tool_calls": ToolCall,
    "model_calls": ModelCall,
    "transitions": StateTransition,
    "reviews": ReviewDecision,
}
_INVALID_NAMESPACE: Final = uuid.UUID("3c5e8f0e-2a61-4d0c-9a7e-5b1d3f9e6a42")
_MAX_REASON: Final = 2000


def invalid_id(topic: str, partition: int, offset: int) -> str:
    """The deterministic id of the dead letter of the record at ``topic/partition/offset``."""
    return str(uuid.uuid5(_INVALID_NAMESPACE, f"{topic}/{partition}/{offset}"))


def codec_for(settings: Settings) -> AvroCodec:
    """The decoder: single-object framing, plus Confluent framing when a registry is set."""
    emitter = settings.emitter
    if emitter.registry_url is None:
        return DEFAULT_CODEC
    password = emitter.registry_password.get_secret_value() if emitter.registry_password else None
    registry = HttpSchemaRegistry(
        emitter.registry_url, username=emitter.registry_username, password=password
    )
    return AvroCodec(registry=registry)


class Gate:
    """Decodes and validates input records; builds dead letters."""

    def __init__(self, settings: Settings, codec: AvroCodec | None = None) -> None:
        self._codec = codec or codec_for(settings)
        emitter = settings.emitter
        self._redactor = Redactor(emitter.redact_kinds, emitter.redact_patterns)
        topics = settings.topics
        self.models: dict[str, type[Record]] = {
            topics.name(stream): model for stream, model in INPUT_MODELS.items()
        }

    def redact(self, text: str) -> str:
        """``text`` with PII replaced."""
        return self._redactor.text(text)

    def decode(
        self, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None
    ) -> InputEvent | InvalidEvent:
        """The event of one record, or its dead letter."""
        model = self.models.get(topic)
        if model is None:
            return self.dead_letter(
                topic, partition, offset, key, raw, f"not an input topic: {topic}", "UnknownTopic"
            )
        if raw is None:
            return self.dead_letter(
                topic, partition, offset, key, raw, "empty record (no value)", "CodecError"
            )
        try:
            event = self._codec.decode_model(raw, model)
        except AgentstreamError as exc:
            return self.dead_letter(topic, partition, offset, key, raw, str(exc), type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - bad input must never crash the worker
            reason = f"undecodable record: {type(exc).__name__}: {exc}"
            return self.dead_letter(topic, partition, offset, key, raw, reason, "CodecError")
        if not isinstance(event, ToolCall | ModelCall | StateTransition | ReviewDecision):
            reason = f"unexpected record {type(event).__name__}"  # pragma: no cover
            return self.dead_letter(topic, partition, offset, key, raw, reason, "CodecError")
        if key is not None and key != event.run_id.encode():
            reason = (
                f"record key {key[:64]!r} is not the event's run_id {event.run_id!r} "
                "(events must be keyed by run_id so a run stays on one partition)"
            )
            return self.dead_letter(
                topic, partition, offset, key, raw, reason, "KeyMismatch", event
            )
        return event

    def dead_letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        raw: bytes | None,
        reason: str,
        error_type: str,
        event: InputEvent | None = None,
    ) -> InvalidEvent:
        """The :class:`InvalidEvent` of a refused record (``event``: it decoded, for its ids)."""
        text = self._redactor.text(reason)[:_MAX_REASON] or error_type
        return InvalidEvent(
            invalid_id=invalid_id(topic, partition, offset),
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key,
            raw=raw or b"",
            reason=text,
            error_type=error_type,
            run_id=event.run_id if event is not None else None,
            tenant_id=event.tenant_id if event is not None else None,
            event_id=event.event_id if event is not None else None,
        )
