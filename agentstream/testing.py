"""Test doubles: :class:`InMemoryEmitter` for code that emits agent events,
:class:`RecordedMetrics` for the pipeline's metrics.

``InMemoryEmitter`` runs the very pipeline of :class:`agentstream.Emitter` —
run context, trace ids, validation, redaction, encoding, the size limit, the
helpers — and keeps the messages in memory instead of sending them::

    from agentstream import run_context
    from agentstream.testing import InMemoryEmitter

    def test_search_is_traced():
        emitter = InMemoryEmitter()
        with run_context(tenant_id="t1", agent_id="planner"):
            my_agent.run(emitter)
        [call] = emitter.events_of(ToolCall)
        assert call.status == "SUCCESS"

``RecordedMetrics`` (needs ``opentelemetry-sdk``, the worker extra) keeps what a
component records in memory: pass ``recorded.metrics`` as its ``metrics=``
and read ``recorded.values("agentstream.events.consumed")``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, TypeVar

from agentstream.core.config import Settings, load_settings
from agentstream.core.metrics import PipelineMetrics
from agentstream.core.redact import Redactor
from agentstream.emitter._core import Classifier, EmitterCore, Headers
from agentstream.schemas import AgentEvent, AvroCodec

__all__ = ["InMemoryEmitter", "RecordedMetrics", "SentMessage"]

#: a metric point's attributes, sorted: ``(("stage", "sink"), ("topic", "agent.tool_calls"))``
Attributes = tuple[tuple[str, Any], ...]

E = TypeVar("E", bound=AgentEvent)


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One message as the Emitter would have produced it."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event: AgentEvent

    def header(self, name: str) -> bytes | None:
        """The value of header ``name``, if present."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class InMemoryEmitter(EmitterCore):
    """An Emitter that keeps what it would send; same API, same validation, no Kafka.

    ``settings`` defaults to ``load_settings()`` (the environment is honoured;
    redaction and size limit included).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        codec: AvroCodec | None = None,
        redactor: Redactor | bool | None = True,
        classify: Classifier | None = None,
    ) -> None:
        super().__init__(
            settings if settings is not None else load_settings(),
            codec=codec if codec is not None else AvroCodec(),
            redactor=redactor,
            classify=classify,
        )
        self._lock = threading.Lock()
        self._messages: list[SentMessage] = []
        self.closed = False

    def _send(
        self, topic: str, key: bytes, value: bytes, headers: Headers, event: AgentEvent
    ) -> None:
        with self._lock:
            self._messages.append(SentMessage(topic, key, value, tuple(headers or ()), event))

    @property
    def messages(self) -> list[SentMessage]:
        """Every message, in emit order."""
        with self._lock:
            return list(self._messages)

    @property
    def events(self) -> list[AgentEvent]:
        """Every event as sent (validated, redacted), in emit order."""
        return [message.event for message in self.messages]

    def events_of(self, event_type: type[E]) -> list[E]:
        """The events of one type, in emit order."""
        return [e for e in self.events if isinstance(e, event_type)]

    def decoded(self) -> list[AgentEvent]:
        """Every message's bytes decoded back into a model (checks the encoding too)."""
        out: list[AgentEvent] = []
        for message in self.messages:
            model = self.codec.decode_model(message.value)
            if not isinstance(model, AgentEvent):  # pragma: no cover - agent events only
                raise TypeError(f"not an agent event: {type(model).__name__}")
            out.append(model)
        return out

    def clear(self) -> None:
        """Forget every message."""
        with self._lock:
            self._messages.clear()

    def flush(self, timeout: float | None = None) -> int:
        """Nothing is ever pending: 0."""
        return 0

    def close(self, timeout: float | None = None) -> None:
        """Mark closed (the messages stay readable)."""
        self.closed = True

    def stats(self) -> dict[str, Any]:
        """``{"emitted": n}``."""
        return {"emitted": len(self._messages)}


class RecordedMetrics:
    """Pipeline instruments on their own SDK meter provider, read back in memory."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.metrics = PipelineMetrics(self.provider)

    def _points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def values(self, name: str) -> dict[Attributes, float]:
        """A counter's or gauge's current value per attribute set (histograms: the count)."""
        out: dict[Attributes, float] = {}
        for point in self._points(name):
            key = tuple(sorted((point.attributes or {}).items()))
            out[key] = point.count if hasattr(point, "bucket_counts") else point.value
        return out

    def total(self, name: str, **attributes: Any) -> float:
        """The sum over the points whose attributes include ``attributes``."""
        wanted = set(attributes.items())
        return sum(v for key, v in self.values(name).items() if wanted <= set(key))

    def shutdown(self) -> None:
        self.provider.shutdown()
