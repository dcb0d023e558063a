"""``MasterChanged`` (issue 17 §5): the signature and leader checks, the overlay of the API's
view until the snapshots show the change, and the API's handling of repeats and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator_api.promotions import Promotions, changed_notice
from orchestrator_api.store.promoted import HOLD_SECONDS, Promotion, disagree, overlay
from orchestrator_api.store.view import FleetView
from orchestrator_shared.bus import (
    LeaderEvent,
    LeaderIdentity,
    MasterChanged,
    StoreChanged,
    Subjects,
)
from orchestrator_shared.command_signing import generate_key
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.master_change import MasterChangeSigner, MasterChangeVerifier
from orchestrator_shared.snapshot import InstanceSnapshot, ProbeFacts, ReplicationChannel

pytestmark = pytest.mark.unit

BEFORE = datetime(2026, 12, 8, 4, 0, tzinfo=UTC)
PROMOTED = BEFORE + timedelta(seconds=1)
AFTER = PROMOTED + timedelta(seconds=1)
KEY = generate_key()
M, D, R = "m:3306", "d:3306", "r:3306"


def leader(token: int = 7, worker: str = "w1") -> LeaderEvent:
    identity = LeaderIdentity(id=worker, host="h", pid=1, started_at=BEFORE)
    return LeaderEvent(leader=identity, fencing_token=token, observed_at=BEFORE)


def message(**changes: object) -> MasterChanged:
    base = MasterChanged(
        cluster=M,
        cluster_alias="shop",
        failed=M,
        successor=D,
        demoted_replicates=True,
        recovery_id="r1",
        command="graceful-master-takeover-auto",
        fencing_token=7,
        worker="w1",
        promoted_at=PROMOTED,
    )
    return base.model_copy(update=changes)


def signed(key: str = KEY, **changes: object) -> MasterChanged:
    return MasterChangeSigner(key, clock=lambda: PROMOTED).sign(message(**changes))


def verifier(key: str = KEY) -> MasterChangeVerifier:
    return MasterChangeVerifier(key, clock=lambda: PROMOTED + timedelta(milliseconds=5))


# --- the verifier ---------------------------------------------------------------------------


def test_a_message_signed_by_the_leader_is_accepted_once() -> None:
    check = verifier()
    real = signed()
    assert check.refusal(real, leader()) is None
    assert check.refusal(real, leader()) == "the message was already received (a replay)"


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (message(), "not signed"),
        (signed(key=generate_key()), "signature is not valid"),
        (signed().model_copy(update={"successor": R}), "signature is not valid"),
        (signed(fencing_token=6), "not by the leader"),
        (signed(worker="w2"), "not by the leader"),
    ],
)
def test_unsigned_forged_altered_or_deposed_messages_are_refused(
    sent: MasterChanged, why: str
) -> None:
    refusal = verifier().refusal(sent, leader())
    assert refusal is not None and why in refusal


def test_an_expired_message_is_refused() -> None:
    late = MasterChangeVerifier(KEY, clock=lambda: PROMOTED + timedelta(seconds=60))
    refusal = late.refusal(signed(), leader())
    assert refusal is not None and "expired" in refusal


def test_without_a_key_or_while_nobody_leads_nothing_is_accepted() -> None:
    assert "no CommandSigningKey" in (verifier("").refusal(signed(), leader()) or "")
    nobody = LeaderEvent(leader=None, fencing_token=0, observed_at=BEFORE)
    assert "no recovery worker leads" in (verifier().refusal(signed(), nobody) or "")


def test_without_leader_events_the_fencing_tokens_must_not_go_back() -> None:
    check = verifier()
    assert check.refusal(signed(fencing_token=8), None) is None
    assert "below 8" in (check.refusal(signed(fencing_token=7), None) or "")
    assert "not above 0" in (verifier().refusal(signed(fencing_token=0), None) or "")
    assert check.refusal(signed(fencing_token=9), None) is None


# --- the overlay ----------------------------------------------------------------------------


def snap(key: str, master: str | None = None, *, at: datetime = BEFORE) -> InstanceSnapshot:
    return InstanceSnapshot(
        key=key,
        probe=ProbeFacts(ok=True, checked_at=at, attempted_at=at, last_seen_at=at),
        read_only=master is not None,
        channels=(ReplicationChannel(master_key=master, io_running="Yes", sql_running="Yes"),)
        if master
        else (),
        suggested_cluster_alias="shop",
    )


def fleet(*snapshots: InstanceSnapshot) -> FleetView:
    return FleetView({s.instance_key: s for s in snapshots}, {}, now=PROMOTED)


def promotion(**changes: object) -> Promotion:
    return Promotion.of(message(**changes), received=0.0)


def master_of(view: FleetView, hint: str) -> str:
    name = view.resolve_cluster(hint)
    assert name is not None, hint
    return str(view.topology.clusters[name].master)


def test_a_takeover_names_the_successor_by_old_name_alias_and_new_name() -> None:
    before = fleet(snap(M), snap(D, M), snap(R, D))
    after = overlay(before, [promotion()])
    for hint in (M, D, "shop", R):
        assert master_of(after, hint) == D, hint
    assert len(after.topology.clusters) == 1  # the demoted master below the successor
    assert after.snapshots[InstanceKey.parse(M)].read_only
    assert not after.snapshots[InstanceKey.parse(D)].read_only
    assert master_of(before, "shop") == M  # the store's view is left as it was


def test_a_failover_names_the_successor_and_the_dead_master_is_lost() -> None:
    before = fleet(snap(M), snap(D, M), snap(R, M))
    after = overlay(before, [promotion(demoted_replicates=False, command="")])
    assert master_of(after, M) == D
    assert master_of(after, "shop") == D
    assert InstanceKey.parse(M) in after.lost


def test_a_server_probed_after_the_promotion_that_says_otherwise_rules() -> None:
    # the successor answered read-only and replicating: the message is no longer shown
    denied = fleet(snap(M), snap(D, M, at=AFTER))
    assert disagree(denied, promotion())
    assert overlay(denied, [promotion()]) is denied
    # the old master answered writable after a takeover: the same
    writable = fleet(snap(M, at=AFTER), snap(D, M))
    assert overlay(writable, [promotion()]) is writable


def test_fresh_snapshots_are_shown_as_they_are_and_the_overlay_ends_once_they_name_it() -> None:
    # the successor probed again (writable, alone), the old master not yet: still needed
    half = fleet(snap(M), snap(D, at=AFTER), snap(R, D, at=AFTER))
    shown = overlay(half, [promotion()])
    assert master_of(shown, M) == D and master_of(shown, "shop") == D
    assert shown.snapshots[InstanceKey.parse(D)] is half.snapshots[InstanceKey.parse(D)]
    # a failover's dead master, probed again (failing) while its replicas are not: still needed
    dead = snap(M, at=AFTER).model_copy(
        update={"probe": ProbeFacts(ok=False, checked_at=AFTER, attempted_at=AFTER)}
    )
    after_failover = fleet(dead, snap(D, at=AFTER), snap(R, M))
    failover = promotion(demoted_replicates=False, command="")
    assert master_of(overlay(after_failover, [failover]), M) == D
    # both probed again: the snapshots name the successor themselves, the overlay ends
    settled = fleet(snap(M, D, at=AFTER), snap(D, at=AFTER), snap(R, D, at=AFTER))
    assert overlay(settled, [promotion()]) is settled
    assert master_of(settled, M) == D


def test_a_promotion_that_does_not_fit_the_view_is_left_out() -> None:
    unknown = fleet(snap(M), snap(R, M))  # the successor is not known
    assert overlay(unknown, [promotion()]) is unknown
    apart = fleet(snap(M), snap(D))  # not one cluster: not the master's replica
    assert overlay(apart, [promotion()]) is apart
    with pytest.raises(ValueError, match="failed master itself"):
        promotion(successor=M)


# --- the API's handling -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_api_holds_a_promotion_once_and_lets_it_go_after_the_hold() -> None:
    clock = Clock()
    held = Promotions(Subjects(), verifier(), leader, clock=clock)
    before = fleet(snap(M), snap(D, M))
    assert held.apply(before) is before
    real = signed()
    assert held.receive(real.to_json()) is None
    again = signed()  # the same recovery, another nonce: nothing more
    assert held.receive(again.to_json()) is None
    assert held.applied == 1
    shown = held.apply(before)
    assert master_of(shown, M) == D
    assert held.apply(before) is shown  # cached for the same view
    clock.now += HOLD_SECONDS + 0.1
    assert held.apply(before) is before


def test_the_api_refuses_and_counts_what_it_cannot_apply() -> None:
    held = Promotions(Subjects(), verifier(), leader)
    before = fleet(snap(M), snap(D, M))
    assert "not a valid MasterChanged" in (held.receive(b'{"schema": 1}') or "")
    assert "not signed" in (held.receive(message().to_json()) or "")
    assert "failed master itself" in (held.receive(signed(successor=M).to_json()) or "")
    assert held.refused == 3
    assert held.apply(before) is before


def test_a_newer_change_of_the_same_servers_replaces_the_older_one() -> None:
    held = Promotions(Subjects(), verifier(), leader)
    before = fleet(snap(M), snap(D, M))
    assert held.receive(signed().to_json()) is None
    back = signed(recovery_id="r2", cluster=D, failed=D, successor=M)  # and back again
    assert held.receive(back.to_json()) is None
    shown = held.apply(before)
    assert master_of(shown, M) == M and master_of(shown, D) == M
    assert not shown.snapshots[InstanceKey.parse(M)].read_only


def test_each_promotion_held_is_told_once_for_the_live_stream() -> None:
    told: list[Promotion] = []
    held = Promotions(Subjects(), verifier(), leader, on_applied=told.append)
    held.receive(signed().to_json())
    held.receive(signed().to_json())  # the same recovery again
    held.receive(message().to_json())  # refused
    [promotion] = told
    notice = StoreChanged.model_validate_json(changed_notice(promotion))
    assert set(notice.clusters) == {M, D} and set(notice.instances) == {M, D}


def test_a_failed_probe_after_the_promotion_does_not_count_as_fresh() -> None:
    # the successor's probe failed: its snapshot repeats the facts from before (a replica)
    failing = snap(D, M, at=AFTER).model_copy(
        update={"probe": ProbeFacts(ok=False, checked_at=AFTER, attempted_at=AFTER)}
    )
    shown = overlay(fleet(snap(M), failing), [promotion()])
    assert master_of(shown, M) == D
    assert shown.snapshots[InstanceKey.parse(D)].master_key is None
    assert len(shown.topology.clusters) == 1
