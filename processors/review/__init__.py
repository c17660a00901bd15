"""Review sampling: which finished runs go to human review (issue #16, level 3).

* :class:`ReviewSampler` — ``request(transition) -> ReviewRequest | None`` for a run's
  terminal transition: sampled by a stable hash of its ``run_id`` against
  ``review.sample_rate`` (:func:`hash_fraction`, spec in :mod:`._sampler`), or by a rule.

The engine calls it on every lifecycle output (accepted transitions and synthesized
timeouts), so a run is requested once, in the same transaction as its end.
"""

from agentstream.processors.review._sampler import (
    REQUEST_NAMESPACE,
    ReviewSampler,
    hash_fraction,
    load_rules,
)

__all__ = ["REQUEST_NAMESPACE", "ReviewSampler", "hash_fraction", "load_rules"]
