"""What operators register about instances: downtime and promotion rules (pure values).

The store keeps them, the API shows them in orchestrator's ``Instance`` JSON, and the recovery
service reads them when it chooses a candidate or skips a downtimed failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from orchestrator_shared.instance_key import InstanceKey


class PromotionRule(StrEnum):
    """orchestrator's promotion rules (``register-candidate``, ``DetectPromotionRuleQuery``)."""

    MUST = "must"
    PREFER = "prefer"
    NEUTRAL = "neutral"
    PREFER_NOT = "prefer_not"
    MUST_NOT = "must_not"


@dataclass(frozen=True, slots=True)
class Downtime:
    """ "Expected to be broken, do not recover": analysed, but skipped by automated recovery."""

    key: InstanceKey
    owner: str
    reason: str
    begins_at: datetime
    ends_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.ends_at > now


@dataclass(frozen=True, slots=True)
class Candidate:
    """A promotion rule registered for an instance until ``expires_at``."""

    key: InstanceKey
    rule: PromotionRule
    registered_at: datetime
    expires_at: datetime

    def is_active(self, now: datetime) -> bool:
        return self.expires_at > now
