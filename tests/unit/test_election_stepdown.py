"""The election's step-down rules without etcd or a clock: times are plain numbers on a made-up
monotonic clock, etcd's answers plain values (orchestrator_adapters.election_stepdown)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator_adapters.election_stepdown import (
    Approval,
    CampaignOutcome,
    ObservedLeader,
    Refusal,
    StepDown,
)
from orchestrator_shared.bus import LeaderIdentity

pytestmark = pytest.mark.unit

ME = LeaderIdentity(id="w1", host="h1", pid=1, started_at=datetime(2026, 1, 1, tzinfo=UTC))
OTHER = LeaderIdentity(id="w2", host="h2", pid=2, started_at=datetime(2026, 1, 1, tzinfo=UTC))
SINCE = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def leading(token: int = 41, *, granted_at: float = 100.0) -> StepDown:
    """A worker with lease 7 (TTL 3 s, margin 0.5 s) granted at ``granted_at``, leading."""
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    state.granted(7, 3, sent=granted_at)
    state.begin(token, ME, SINCE, granted_at)
    return state


def test_the_deadline_counts_from_when_the_request_was_sent() -> None:
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    state.granted(7, 3, sent=100.0)
    assert (state.lease_id, state.lease_deadline, state.stepdown_at) == (7, 103.0, 102.5)


def test_a_smaller_grant_than_asked_is_used_and_no_grant_ttl_means_the_asked_one() -> None:
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    state.granted(7, 2, sent=100.0)
    assert (state.lease_ttl, state.lease_deadline) == (2, 102.0)
    state.granted(8, 0, sent=200.0)
    assert (state.lease_ttl, state.lease_deadline) == (3, 203.0)
    state.granted(9, 10, sent=300.0)  # never more than asked
    assert (state.lease_ttl, state.lease_deadline) == (3, 303.0)


def test_a_keep_alive_moves_the_deadline_on_never_back() -> None:
    state = leading()
    state.renewed(3, sent=101.0)
    assert state.stepdown_at == 103.5
    state.renewed(3, sent=100.5)  # a late answer to an earlier keep-alive
    assert state.stepdown_at == 103.5
    state.renewed(60, sent=102.0)  # etcd's TTL never stretches ours
    assert state.lease_deadline == 105.0


def test_the_leader_steps_down_one_margin_before_the_lease_could_expire() -> None:
    state = leading()
    assert state.overdue(102.49) is None
    assert state.overdue(102.5) == "the lease could not be renewed in time"
    assert state.timer_fired(102.49, "") is None  # early: set the timer again
    assert state.timer_fired(102.5, "") == (
        "the lease could not be renewed for 2.5 s (etcd: no answer)"
    )
    reason = state.timer_fired(103.0, "connection refused")
    assert reason is not None and reason.endswith("(etcd: connection refused)")


def test_a_standby_has_nothing_to_step_down_from() -> None:
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    state.granted(7, 3, sent=100.0)
    assert state.overdue(500.0) is None
    assert state.timer_fired(500.0, "") is None
    assert state.key_deleted() is None
    assert state.key_written(50, OTHER) is None
    assert state.observed == ObservedLeader(OTHER, 50)


def test_end_returns_the_term_once() -> None:
    state = leading()
    ended = state.end()
    assert ended is not None and (ended.token, ended.identity) == (41, ME)
    assert state.end() is None and state.leadership is None


def test_the_lease_backs_a_campaign_only_before_the_step_down_instant() -> None:
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    assert not state.usable(0.0)  # no lease yet
    state.granted(7, 3, sent=100.0)
    assert state.usable(102.4) and not state.usable(102.5)
    assert state.lease_gone() == "etcd says the lease has expired"
    assert state.lease_id == 0 and not state.usable(100.0)


def test_a_campaign_leads_only_with_the_lease_it_still_holds() -> None:
    state = StepDown(lease_ttl=3, safety_margin=0.5)
    state.granted(7, 3, sent=100.0)

    def outcome(key_lease: int | None, *, sent_with: int = 7, now: float = 101.0) -> object:
        return state.campaigned(key_lease=key_lease, lease_id=sent_with, campaigning=True, now=now)

    assert outcome(7) is CampaignOutcome.LEAD
    assert outcome(None) is CampaignOutcome.FOLLOW
    assert outcome(8) is CampaignOutcome.FOLLOW  # someone else's key
    assert outcome(6, sent_with=6) is CampaignOutcome.FOLLOW  # a lease we no longer hold
    assert outcome(7, now=102.5) is CampaignOutcome.HAND_BACK  # too late to lead on it
    resigned = state.campaigned(key_lease=7, lease_id=7, campaigning=False, now=101.0)
    assert resigned is CampaignOutcome.HAND_BACK


def test_the_watch_ends_the_term_when_the_key_goes_or_changes_hands() -> None:
    deleted = leading()
    assert deleted.key_deleted() == "the leader key of token 41 was deleted"
    assert deleted.observed == ObservedLeader(None, 0)

    same = leading()
    assert same.key_written(41, ME) is None  # our own key, rewritten
    replaced = leading()
    assert replaced.key_written(57, OTHER) == "the leader key now has token 57"
    assert replaced.observed == ObservedLeader(OTHER, 57)


def test_giving_the_key_up_forgets_it_only_if_it_was_the_one_seen() -> None:
    state = leading()
    state.key_given_up(41)
    assert state.observed == ObservedLeader(None, 0)
    other = leading()
    other.observed = ObservedLeader(OTHER, 57)
    other.key_given_up(41)
    assert other.observed == ObservedLeader(OTHER, 57)


def test_the_guard_waits_for_etcd_no_longer_than_the_term_may_last() -> None:
    state = leading()
    assert state.guard_budget(100.0, 1.0) == 1.0
    assert state.guard_budget(102.0, 1.0) == 0.5


def test_a_confirmed_token_is_approved_until_the_step_down_instant() -> None:
    state = leading()
    term = state.leadership
    assert term is not None
    assert state.confirmation(term, True, 101.0) == Approval(token=41, valid_until=102.5)


def test_a_stale_token_ends_the_term_it_belongs_to() -> None:
    state = leading()
    term = state.leadership
    assert term is not None
    assert state.confirmation(term, False, 101.0) == Refusal(
        "fencing token 41 is stale", step_down=True
    )
    state.end()
    # the term already ended (and a new one may have begun): refuse, end nothing
    state.begin(60, ME, SINCE, 101.0)
    assert state.confirmation(term, False, 101.0) == Refusal("fencing token 41 is stale")


def test_no_approval_for_a_term_that_ended_or_ran_out_while_etcd_answered() -> None:
    state = leading()
    term = state.leadership
    assert term is not None
    late = state.confirmation(term, True, 102.5)
    assert late == Refusal("leadership 41 ended while it was being confirmed")
    state.end()
    assert state.confirmation(term, True, 101.0) == Refusal(
        "leadership 41 ended while it was being confirmed"
    )
