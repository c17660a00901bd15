"""The catalog of streams: one place that says which contract model travels on which
topic, which table stores it, which of its fields are free text, and who writes it.

Everything else reads this table: the Emitter (topic per event type, fields to
redact), the processors (their input topics and models), the sink (routes, bad-record
policies, tables, fields it redacts again), the bench and the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from agentstream.core.config import TopicSettings
from agentstream.schemas import (
    AgentEvent,
    Alert,
    EvalResult,
    Feedback,
    InvalidEvent,
    ModelCall,
    Record,
    ReviewDecision,
    Rollup,
    StateTransition,
    ToolCall,
)

__all__ = [
    "AGENT_EVENTS",
    "STREAMS",
    "BadRecordPolicy",
    "Stream",
    "stream",
    "stream_of_event",
]

#: what the sink does with a record of this stream that does not decode or breaks the contract:
#: ``skip`` (count and move on: the processors' contract gate dead-letters it already),
#: ``dead_letter`` (send it to the invalid topic), ``drop`` (log it: re-sending would loop)
BadRecordPolicy = Literal["skip", "dead_letter", "drop"]


@dataclass(frozen=True)
class Stream:
    """One stream: a :class:`TopicSettings` field, its model and where it goes."""

    #: the stream's name: a field of :class:`TopicSettings` (``topics.name(stream.name)``)
    name: str
    model: type[Record]
    #: who writes it: agents (through the Emitter) or the processors
    writer: Literal["agent", "processors"]
    #: the table that stores it (``rollups`` are stored per resolution: ``rollups_1m``); None:
    #: not stored as is (raw transitions are stored from ``lifecycle``, once validated)
    table: str | None
    #: free-text fields (every string field a person or a program may have written into:
    #: params, summaries, error codes, reasons, comments, messages), redacted by the Emitter
    #: and again by the sink, with the same rules
    free_text: tuple[str, ...] = ()
    #: how the sink treats a bad record; None: the sink does not read this stream
    sink: BadRecordPolicy | None = None

    def topic(self, topics: TopicSettings) -> str:
        """This stream's full topic name."""
        return topics.name(self.name)


STREAMS: Final[tuple[Stream, ...]] = (
    Stream(
        "tool_calls",
        ToolCall,
        "agent",
        "tool_calls",
        ("params", "result_summary", "error_code"),
        "skip",
    ),
    Stream("model_calls", ModelCall, "agent", "model_calls", ("error_code",), "skip"),
    Stream("transitions", StateTransition, "agent", None, ("reason", "error_category")),
    Stream("reviews", ReviewDecision, "agent", "review_decisions", ("comment",), "skip"),
    # no processor reads these two: the sink is their only gate, so it dead-letters bad records
    Stream(
        "eval_results",
        EvalResult,
        "agent",
        "eval_results",
        ("expected", "got"),
        "dead_letter",
    ),
    Stream("feedback", Feedback, "agent", "feedback", ("comment",), "dead_letter"),
    Stream(
        "lifecycle",
        StateTransition,
        "processors",
        "state_transitions",
        ("reason", "error_category"),
        "dead_letter",
    ),
    Stream("invalid", InvalidEvent, "processors", "invalid_events", ("reason",), "drop"),
    Stream("rollups", Rollup, "processors", "rollups", (), "dead_letter"),
    Stream("alerts", Alert, "processors", "alerts", ("message",), "dead_letter"),
)

_BY_NAME: Final[Mapping[str, Stream]] = MappingProxyType({s.name: s for s in STREAMS})


def _agent_events() -> dict[type[AgentEvent], Stream]:
    events: dict[type[AgentEvent], Stream] = {}
    for s in STREAMS:
        if s.writer == "agent" and issubclass(s.model, AgentEvent):
            events[s.model] = s
    return events


#: the agent event types and the stream each is emitted on
AGENT_EVENTS: Final[Mapping[type[AgentEvent], Stream]] = MappingProxyType(_agent_events())


def stream(name: str) -> Stream:
    """The stream called ``name``; ``KeyError`` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stream {name!r}; known: {', '.join(_BY_NAME)}") from None


def stream_of_event(event_type: type[Record]) -> Stream | None:
    """The stream agents emit ``event_type`` on, or None."""
    return next((s for s in AGENT_EVENTS.values() if s.model is event_type), None)
