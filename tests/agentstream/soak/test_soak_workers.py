"""The soak's ``rebalance`` fault: with two or more workers, the last one leaves for good
(SIGKILL, not restarted) and a new identity joins later; kill-and-restart spares the one
that leaves; with one worker there is nothing to rebalance."""

from __future__ import annotations

import random

from agentstream.devtools.soak import SoakOptions
from agentstream.devtools.soak.faults import schedule


def test_the_last_worker_leaves_then_a_new_one_joins() -> None:
    options = SoakOptions(duration_s=300, workers=3, faults=frozenset({"kill", "rebalance"}))
    for seed in range(20):
        planned = schedule(options, random.Random(seed))
        rebalance = [f for f in planned if f.name == "rebalance"]
        assert [f.index for f in rebalance] == [2, -1]
        assert rebalance[0].at_s < rebalance[1].at_s
        assert all(f.index < 2 for f in planned if f.name == "kill")


def test_one_worker_has_nothing_to_rebalance() -> None:
    options = SoakOptions(duration_s=300, workers=1, faults=frozenset({"rebalance"}))
    assert schedule(options, random.Random(1)) == []
