"""The public API of ``schemas`` and its place at the bottom of the layering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from agentstream import schemas

PACKAGE = Path(schemas.__file__).parent
REPO = Path(__file__).resolve().parents[2]

EXPECTED = {
    # the rollup resolutions (the one definition)
    "RESOLUTIONS",
    "RESOLUTION_SECONDS",
    # models and their vocabulary
    "Record",
    "AgentEvent",
    "ToolCall",
    "EvalResult",
    "Feedback",
    "ModelCall",
    "StateTransition",
    "ReviewDecision",
    "InvalidEvent",
    "Rollup",
    "Alert",
    "ReviewRequest",
    "Rollout",
    "RolloutVerdict",
    "RolloutStatus",
    "VerdictKind",
    "AgentState",
    "AlertState",
    "CallStatus",
    "Decision",
    "ErrorClass",
    "Retention",
    "ScopeKind",
    "Severity",
    "Comparator",
    "Resolution",
    "validate_event",
    "new_uuid",
    "utc_now",
    # catalog
    "MODELS",
    "RECORD_TYPES",
    "RecordType",
    "SchemaVersion",
    "record_type",
    # codec
    "AvroCodec",
    "Decoded",
    "Framing",
    "DEFAULT_CODEC",
    "SINGLE_OBJECT_MAGIC",
    "CONFLUENT_MAGIC",
    "encode_model",
    "encode_dict",
    "decode",
    "decode_dict",
    "decode_model",
    # registries
    "SchemaRegistry",
    "InMemorySchemaRegistry",
    "HttpSchemaRegistry",
    "record_name_subject",
    # evolution
    "check_compatibility",
    "check_history",
    "check_all_history",
    "compatibility_problems",
    # errors
    "AgentstreamError",
    "ContractError",
    "EventValidationError",
    "CodecError",
    "SchemaRegistryError",
    "SchemaCompatibilityError",
}


def test_all_is_the_expected_public_api() -> None:
    assert set(schemas.__all__) == EXPECTED
    assert len(schemas.__all__) == len(EXPECTED)  # no duplicates
    for name in schemas.__all__:
        assert getattr(schemas, name) is not None, name


def test_importing_schemas_loads_no_other_project_package() -> None:
    code = (
        "import sys, agentstream.schemas; "
        "print(sorted(m for m in sys.modules if m.startswith('agentstream.') "
        "and not m.startswith('agentstream.schemas')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_schema_files_ship_with_the_package() -> None:
    names = sorted(path.name for path in PACKAGE.glob("*.avsc"))
    assert names == sorted(f"{rt.name}.avsc" for rt in schemas.RECORD_TYPES.values())
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"*.avsc", "history/*/*.avsc"' in pyproject


def test_modules_stay_small() -> None:
    sizes = {path.name: len(path.read_text().splitlines()) for path in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes
