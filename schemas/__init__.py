"""Event contracts: Avro schemas (source of truth), pydantic mirrors, the codec.

The bottom layer of agentstream: it imports nothing else of the project.

* ``schemas/*.avsc`` — the contract; ``schemas/history/<Name>/vN.avsc`` — released versions;
* models (:class:`ToolCall`, :class:`ModelCall`, ...) — frozen pydantic mirrors;
  bad values raise :class:`EventValidationError` (a :class:`ContractError`);
* :class:`AvroCodec` / :func:`encode_model` / :func:`decode_model` — Avro single-object
  or Confluent framing, one decoder for both;
* :func:`check_all_history` — the current schemas still read every older version.

Changing a schema: edit ``schemas/<Name>.avsc`` and the model in step (a test
compares them field for field), give every new field a default, then copy the
file to ``schemas/history/<Name>/v<N+1>.avsc`` (a test requires the latest
history version to equal the current schema, and every version to stay
readable). With the single-object framing a consumer only reads writer schemas
it knows, so roll out consumers (processors, sinks) before producers.

Example::

    from agentstream.schemas import CallStatus, ToolCall, decode_model, encode_model

    event = ToolCall(tenant_id="acme", user_id="u1", agent_id="planner",
                     agent_version="1.4.0", run_id="run-42", tool="search",
                     status=CallStatus.SUCCESS, latency_ms=812.5)
    data = encode_model(event)          # b"\\xc3\\x01" + fingerprint + Avro body
    assert decode_model(data, ToolCall) == event
"""

from agentstream.schemas._base import AgentEvent, Record, new_uuid, utc_now, validate_event
from agentstream.schemas._catalog import (
    MODELS,
    RECORD_TYPES,
    RecordType,
    SchemaVersion,
    record_type,
)
from agentstream.schemas._codec import (
    CONFLUENT_MAGIC,
    DEFAULT_CODEC,
    SINGLE_OBJECT_MAGIC,
    AvroCodec,
    Decoded,
    Framing,
    decode,
    decode_dict,
    decode_model,
    encode_dict,
    encode_model,
    record_name_subject,
)
from agentstream.schemas._compat import (
    check_all_history,
    check_compatibility,
    check_history,
    compatibility_problems,
)
from agentstream.schemas._derived import (
    RESOLUTION_SECONDS,
    RESOLUTIONS,
    Alert,
    Comparator,
    InvalidEvent,
    Resolution,
    Rollup,
)
from agentstream.schemas._enums import (
    AgentState,
    AlertState,
    CallStatus,
    Decision,
    ErrorClass,
    Retention,
    ScopeKind,
    Severity,
)
from agentstream.schemas._events import (
    EvalResult,
    Feedback,
    ModelCall,
    ReviewDecision,
    StateTransition,
    ToolCall,
)
from agentstream.schemas._registry import HttpSchemaRegistry, InMemorySchemaRegistry, SchemaRegistry
from agentstream.schemas._rollouts import (
    ReviewRequest,
    Rollout,
    RolloutStatus,
    RolloutVerdict,
    VerdictKind,
)
from agentstream.schemas.errors import (
    AgentstreamError,
    CodecError,
    ContractError,
    EventValidationError,
    SchemaCompatibilityError,
    SchemaRegistryError,
)

__all__ = [
    "CONFLUENT_MAGIC",
    "DEFAULT_CODEC",
    "MODELS",
    "RECORD_TYPES",
    "RESOLUTIONS",
    "RESOLUTION_SECONDS",
    "SINGLE_OBJECT_MAGIC",
    "AgentEvent",
    "AgentState",
    "AgentstreamError",
    "Alert",
    "AlertState",
    "AvroCodec",
    "CallStatus",
    "CodecError",
    "Comparator",
    "ContractError",
    "Decision",
    "Decoded",
    "ErrorClass",
    "EvalResult",
    "EventValidationError",
    "Feedback",
    "Framing",
    "HttpSchemaRegistry",
    "InMemorySchemaRegistry",
    "InvalidEvent",
    "ModelCall",
    "Record",
    "RecordType",
    "Resolution",
    "Retention",
    "ReviewDecision",
    "ReviewRequest",
    "Rollout",
    "RolloutStatus",
    "RolloutVerdict",
    "Rollup",
    "SchemaCompatibilityError",
    "SchemaRegistry",
    "SchemaRegistryError",
    "SchemaVersion",
    "ScopeKind",
    "Severity",
    "StateTransition",
    "ToolCall",
    "VerdictKind",
    "check_all_history",
    "check_compatibility",
    "check_history",
    "compatibility_problems",
    "decode",
    "decode_dict",
    "decode_model",
    "encode_dict",
    "encode_model",
    "new_uuid",
    "record_name_subject",
    "record_type",
    "utc_now",
    "validate_event",
]
