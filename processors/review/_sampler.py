"""Which finished runs go to human review: a stable hash of the run id against a rate,
plus rules (e.g. every FAILED run of a canary version).

The hash spec (tests compute it on their own from this text): the run id's UTF-8 bytes
through BLAKE2b with an 8-byte digest (``hashlib.blake2b(run_id.encode(), digest_size=8)``,
no key, no salt), read as a big-endian unsigned 64-bit integer and divided by 2**64: a
fraction in [0, 1). A run is sampled when that fraction is below ``review.sample_rate``.
The same run id is therefore sampled by every worker, after every restart and replay, and
raising the rate only adds runs (the runs sampled at 1 % stay sampled at 2 %).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from agentstream.core.config import ReviewRule, ReviewSettings
from agentstream.core.errors import ConfigError
from agentstream.processors.lifecycle import TERMINAL_STATES
from agentstream.schemas import Record, ReviewRequest, StateTransition

__all__ = ["REQUEST_NAMESPACE", "ReviewSampler", "hash_fraction", "load_rules"]

_TWO_64 = float(2**64)
#: the namespace of review request ids: ``uuid5(REQUEST_NAMESPACE, run_id)``
REQUEST_NAMESPACE = uuid.UUID("6f1d4f2e-5c1a-4b53-9a35-2f3c0d6e7a19")


def hash_fraction(run_id: str) -> float:
    """The run id's place in [0, 1): BLAKE2b-64 of its UTF-8 bytes / 2**64 (see module doc)."""
    digest = hashlib.blake2b(run_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _TWO_64


def load_rules(path: Path) -> tuple[ReviewRule, ...]:
    """Rules from a YAML file: a list of mappings (``name``, ``outcome``, ``agent_id``,
    ``agent_version``); :class:`ConfigError` names the file and the field."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"review rules {path}: cannot read: {exc}") from exc
    try:
        return TypeAdapter(tuple[ReviewRule, ...]).validate_python(data or ())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"review rules {path}: [{where}]: {err['msg']}") from exc


class ReviewSampler:
    """Picks finished runs for review; pure and deterministic (no clock, no randomness)."""

    def __init__(self, settings: ReviewSettings) -> None:
        self.rate = settings.sample_rate
        rules: Sequence[ReviewRule] = settings.rules
        if settings.rules_path is not None:
            rules = (*rules, *load_rules(settings.rules_path))
        self.rules = tuple(rules)

    def _rule(self, tr: StateTransition, outcome: str) -> ReviewRule | None:
        for rule in self.rules:
            if (
                (rule.outcome is None or rule.outcome == outcome)
                and fnmatchcase(tr.agent_id, rule.agent_id)
                and fnmatchcase(tr.agent_version, rule.agent_version)
            ):
                return rule
        return None

    def request(self, tr: Record) -> ReviewRequest | None:
        """The review request for a run's terminal transition, or None (not picked, not a
        terminal transition)."""
        if not isinstance(tr, StateTransition):
            return None
        if tr.to_state not in TERMINAL_STATES:
            return None
        outcome = str(tr.to_state)
        fraction = hash_fraction(tr.run_id)
        if fraction < self.rate:
            reason = "sampled"
        else:
            rule = self._rule(tr, outcome)
            if rule is None:
                return None
            reason = f"rule:{rule.name}"
        return ReviewRequest(
            request_id=str(uuid.uuid5(REQUEST_NAMESPACE, tr.run_id)),
            requested_at=tr.event_time,
            tenant_id=tr.tenant_id,
            agent_id=tr.agent_id,
            agent_version=tr.agent_version,
            run_id=tr.run_id,
            outcome=outcome,
            error_category=tr.error_category if outcome == "FAILED" else None,
            reason=reason,
            sample_rate=self.rate,
            hash_fraction=fraction,
        )
