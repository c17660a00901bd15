"""The sink's dead letters: records it cannot store, sent to the ``invalid`` topic with why.

The sink worker commits an offset only once every record below it is stored *or* its
dead letter is delivered: :meth:`DeadLetterOutbox.settle` waits for the deliveries and
raises :class:`~agentstream.core.errors.DeliveryError` if one failed, so the offsets stay
where they are and the records are read again.
"""

from __future__ import annotations

from typing import Any

from agentstream.core.errors import DeliveryError
from agentstream.core.metrics import PipelineMetrics
from agentstream.schemas import AvroCodec
from agentstream.sinks.consumer._loop import SinkStats
from agentstream.sinks.consumer._routing import dead_letter

__all__ = ["DeadLetterOutbox"]


class DeadLetterOutbox:
    """Produces dead letters to ``topic``; counts them in ``stats`` and ``metrics``."""

    def __init__(
        self,
        producer: Any,
        codec: AvroCodec,
        topic: str,
        stats: SinkStats,
        metrics: PipelineMetrics,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self._codec = codec
        self._stats = stats
        self._metrics = metrics
        self._errors: list[str] = []

    def send(self, **fields: Any) -> None:
        """Produce the dead letter of one record (``fields``: :func:`dead_letter`'s)."""
        letter = dead_letter(**fields)
        self.producer.produce(
            self.topic,
            key=fields.get("key"),
            value=self._codec.encode_model(letter),
            on_delivery=self._delivered,
        )
        self.producer.poll(0)
        self._stats.dead_lettered += 1
        self._metrics.produced.add(1, {"stage": "sink", "topic": self.topic})
        self._metrics.invalid.add(
            1, {"stage": "sink", "topic": fields["topic"], "error_type": fields["error_type"]}
        )

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every dead letter sent is delivered; raises if one is not."""
        if len(self.producer) > 0:
            self.producer.flush(timeout)
        if self._errors or len(self.producer) > 0:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"dead letters not delivered: {'; '.join(errors) or 'timeout'}")

    def close(self) -> None:
        """Deliver what is still queued (best effort: the offsets were not committed past it)."""
        self.producer.flush(10)
