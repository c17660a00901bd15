"""agentstream's exception tree.

Every error agentstream raises on purpose derives from :class:`AgentstreamError`;
wrapped library errors (fastavro, Kafka, ClickHouse) are chained with
``raise ... from exc`` so the original stays visible::

    AgentstreamError
    ├── ConfigError                a setting is missing or wrong (message names it)
    │   └── AlertRuleError         an alert rule file is invalid (names rule id and field)
    ├── ContractError (ValueError) an event breaks its contract
    │   ├── EventValidationError   a field value is invalid; names the field (wraps pydantic)
    │   └── EventTimeOutOfRange    an event time no producer's clock could give (clock sanity)
    ├── CodecError (ValueError)    bytes cannot be encoded/decoded
    │   └── SchemaRegistryError    the schema registry failed or has no such id
    ├── SchemaCompatibilityError   a schema change breaks old data
    ├── LocalStackError            the local broker / embedded engine cannot start
    │   ├── ToolMissingError       java or mvn is not installed
    │   ├── PortInUseError         a port the broker needs is taken
    │   ├── BrokerStartError       the broker did not come up in time (has the log tail)
    │   └── TopicPartitionsError   a topic exists with another partition count than configured
    ├── PartitionCountMismatch     the processors' inputs and changelog are not co-partitioned
    ├── DeliveryError              an event could not be delivered nor spooled
    │   └── ChannelError           an alert channel refused or missed a notification
    ├── StorageError               the ClickHouse backend failed
    │   └── BackPressure           the sink is full; retry after ``retry_after`` seconds
    └── QueryRefused               an analyst request is refused (``code``: ClickHouse's code)
        ├── AuthenticationFailed   no API key, an unknown one, or a wrong secret
        ├── QueryUnparsable        the SQL does not parse (ClickHouse dialect)
        └── KeyStoreError          the API key file cannot be read or changed as asked
"""

from __future__ import annotations

from agentstream.schemas.errors import (
    AgentstreamError,
    CodecError,
    ContractError,
    EventValidationError,
    SchemaCompatibilityError,
    SchemaRegistryError,
)

__all__ = [
    "AgentstreamError",
    "AlertRuleError",
    "AuthenticationFailed",
    "BackPressure",
    "BrokerStartError",
    "ChannelError",
    "CodecError",
    "ConfigError",
    "ContractError",
    "DeliveryError",
    "EventTimeOutOfRange",
    "EventValidationError",
    "KeyStoreError",
    "LocalStackError",
    "PartitionCountMismatch",
    "PortInUseError",
    "QueryRefused",
    "QueryUnparsable",
    "SchemaCompatibilityError",
    "SchemaRegistryError",
    "StorageError",
    "ToolMissingError",
    "TopicPartitionsError",
]


class ConfigError(AgentstreamError, ValueError):
    """A setting is missing or invalid; the message names the setting."""


class AlertRuleError(ConfigError):
    """An alert rule file is invalid.

    ``problems`` holds ``(rule_id, field, message)`` triples (``rule_id`` is
    ``"#<n>"`` for a rule without a usable id, ``""`` for file-level problems);
    the message lists them all, prefixed by the file.
    """

    def __init__(self, source: str, problems: list[tuple[str, str, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        parts = []
        for rule_id, field, message in self.problems:
            where = f"rule {rule_id!r}" if rule_id else "file"
            parts.append(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        super().__init__(f"{source}: " + "; ".join(parts))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.source, self.problems))


class LocalStackError(AgentstreamError):
    """The local Kafka broker or the embedded engine cannot be run."""


class ToolMissingError(LocalStackError):
    """A program the local stack needs (java, mvn) is not installed."""


class PortInUseError(LocalStackError):
    """A port the local broker needs is already taken by another process."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is already in use by another process")
        self.host = host
        self.port = port


class BrokerStartError(LocalStackError):
    """The broker did not answer in time; ``log_tail`` holds the end of its log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class TopicPartitionsError(LocalStackError):
    """A topic exists with ``actual`` partitions where the settings want ``wanted``.

    Refused rather than changed: adding partitions moves keys (a run's events would
    land on another partition than its earlier ones, out of order for consumers).
    """

    def __init__(self, topic: str, actual: int, wanted: int, setting: str) -> None:
        super().__init__(
            f"topic {topic!r} has {actual} partition(s), {setting} wants {wanted}; "
            "refusing to change it (adding partitions moves run keys to other partitions): "
            f"set {setting}={actual}, or delete and recreate the topic"
        )
        self.topic = topic
        self.actual = actual
        self.wanted = wanted
        self.setting = setting

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.topic, self.actual, self.wanted, self.setting))


class PartitionCountMismatch(AgentstreamError):
    """The processors' input topics and their changelog do not all have the same partition
    count (``counts``: topic -> partitions; -1: the topic does not exist).

    Run state lives with its input partition: partition ``p`` of every input topic and of
    the changelog must hold the same runs, so the counts must be equal.
    """

    def __init__(self, counts: dict[str, int]) -> None:
        listed = ", ".join(
            f"{topic}: {'missing' if n < 0 else n}" for topic, n in sorted(counts.items())
        )
        super().__init__(
            "the processors' input topics and changelog must have the same partition count "
            f"(run state lives with its input partition); found {listed}"
        )
        self.counts = dict(counts)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.counts,))


class DeliveryError(AgentstreamError):
    """An event could neither be delivered to Kafka nor written to the spool."""


class ChannelError(DeliveryError):
    """An alert channel (webhook, Slack, ...) did not take a notification.

    ``retryable``: a later attempt may succeed (network error, 5xx, 408, 429);
    ``retry_after``: seconds the receiver asked to wait (``Retry-After``), if any.
    """

    def __init__(
        self, message: str, *, retryable: bool = True, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class StorageError(AgentstreamError):
    """The ClickHouse backend (embedded or server) failed."""


class BackPressure(StorageError):
    """The sink's buffer is full; the caller should retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, message: str = "") -> None:
        super().__init__(message or f"sink is full; retry after {retry_after:.2f}s")
        self.retry_after = retry_after


class QueryRefused(AgentstreamError):
    """An analyst request was refused (not allowed for the key, or not read-only).

    ``code`` is the ClickHouse error code the HTTP interface answers with
    (497 ACCESS_DENIED unless a subclass says otherwise).
    """

    code = 497
    name = "ACCESS_DENIED"

    def __init__(self, message: str, *, code: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_refusal, (type(self), str(self), self.code, self.name))


def _rebuild_refusal(cls: type[QueryRefused], message: str, code: int, name: str) -> QueryRefused:
    return cls(message, code=code, name=name)


class AuthenticationFailed(QueryRefused):
    """No API key was given, the key is unknown or revoked, or the secret is wrong."""

    code = 516
    name = "AUTHENTICATION_FAILED"


class QueryUnparsable(QueryRefused):
    """The statement does not parse as one ClickHouse statement."""

    code = 62
    name = "SYNTAX_ERROR"


class KeyStoreError(QueryRefused):
    """The API key file cannot be read or written, or a key operation is impossible."""

    code = 36
    name = "BAD_ARGUMENTS"


class EventTimeOutOfRange(ContractError):
    """An event time beyond ``clock.max_future_skew_s`` ahead or ``clock.max_past_s`` behind
    the reader's clock (:mod:`agentstream.core.clock_sanity`)."""
