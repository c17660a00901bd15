"""The rollup resolution set is written once (``schemas._derived``); the rest derives."""

from __future__ import annotations

import itertools
from typing import get_args

from agentstream.core.config import RolloutSettings, RollupSettings
from agentstream.processors.rollups._build import RESOLUTION_US, TIERS
from agentstream.schemas import RESOLUTION_SECONDS, RESOLUTIONS, Resolution


def test_one_definition_of_the_resolutions() -> None:
    assert set(RESOLUTION_SECONDS) == set(get_args(Resolution))
    assert RESOLUTIONS == TIERS == RollupSettings().resolutions
    assert list(RESOLUTIONS) == sorted(RESOLUTIONS, key=RESOLUTION_SECONDS.__getitem__)
    assert {r: us // 1_000_000 for r, us in RESOLUTION_US.items()} == dict(RESOLUTION_SECONDS)
    # each tier merges whole windows of the finer one
    lengths = [RESOLUTION_SECONDS[r] for r in RESOLUTIONS]
    assert all(coarse % fine == 0 for fine, coarse in itertools.pairwise(lengths))
    assert RolloutSettings(resolution="1d").resolution == "1d"
