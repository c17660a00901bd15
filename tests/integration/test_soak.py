"""`agentstream soak --duration 120` with every fault, against the real worker, broker and
ClickHouse: every stored figure must equal the independently computed truth (about 6
minutes on a CI machine; the same run as `make soak`, with another seed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentstream.core.config import LocalKafkaSettings
from agentstream.devtools.soak import FAULTS, SoakOptions, differences, run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1500)]


def test_a_soak_with_every_fault_stores_the_truth(
    tmp_path: Path, local_kafka_settings: LocalKafkaSettings
) -> None:
    options = SoakOptions(
        duration_s=120,
        seed=11,
        faults=frozenset(FAULTS),
        home=tmp_path / "soak",
        local_kafka=local_kafka_settings,
    )
    result = run_soak(options, display=False)

    assert result.sent > 1_000
    assert [(r.figure, r.truth, r.stored) for r in differences(result.rows)] == []
