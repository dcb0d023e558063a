"""A hung master's path through the recovery worker, with fakes for its ports: the replicas'
heartbeat managed by the leader (which replicas, which statements, audited, never in a tight
loop), re-verification while the replicas still say they replicate, the suspect's own probe
bounded, and the fence that lands the moment the old master wakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta

import pytest

from orchestrator_recovery.failover import worker as worker_module
from orchestrator_recovery.failover.heartbeat import (
    HeartbeatPolicy,
    ReplicaHeartbeat,
    heartbeat_statements,
    masters_to_prime,
    replicas_to_manage,
)
from orchestrator_recovery.ports import Fenced, Guard
from orchestrator_shared.analysis import AnalysisCode
from orchestrator_shared.errors import OrchestratorError
from orchestrator_shared.events import RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.unit.test_analysis_scenarios import NOW
from tests.unit.test_recovery_worker import (
    BROKEN_IO,
    MASTER,
    PLANNED,
    R1,
    R2,
    FakePublisher,
    Harness,
    fleet,
)

pytestmark = pytest.mark.unit

POLICY = HeartbeatPolicy(managed=True, net_timeout=1)


def with_heartbeat(
    snapshots: dict[InstanceKey, InstanceSnapshot], net_timeout: int, period: float
) -> dict[InstanceKey, InstanceSnapshot]:
    """The snapshots with every replica reporting ``net_timeout`` and ``period``."""
    changed = {}
    for key, snap in snapshots.items():
        changed[key] = snap
        if snap.channels:
            channel = snap.channels[0].model_copy(update={"heartbeat_period": period})
            changed[key] = snap.model_copy(
                update={"slave_net_timeout": net_timeout, "channels": (channel,)}
            )
    return changed


HEALTHY_DEFAULTS = with_heartbeat(fleet(master_ok=True, replicas={}), 60, 30.0)
M = InstanceKey.parse(MASTER)
HEALTHY_DEFAULTS[M] = HEALTHY_DEFAULTS[M].model_copy(update={"slave_net_timeout": 60})


# --- which replicas, which statements ------------------------------------------------------


def test_the_statements_set_the_timeout_then_the_period_with_the_threads_stopped() -> None:
    assert heartbeat_statements(HeartbeatPolicy(net_timeout=2)) == (
        "SET GLOBAL slave_net_timeout = 2",
        "STOP SLAVE",
        "CHANGE MASTER TO master_heartbeat_period = 1.000",
        "START SLAVE",
    )


def test_one_healthy_differing_replica_per_master_is_changed_at_a_time() -> None:
    assert replicas_to_manage(HEALTHY_DEFAULTS, POLICY) == [InstanceKey.parse(R1)]
    assert replicas_to_manage(HEALTHY_DEFAULTS, POLICY, excluded=[InstanceKey.parse(R1)]) == [
        InstanceKey.parse(R2)
    ]
    assert replicas_to_manage(HEALTHY_DEFAULTS, HeartbeatPolicy(managed=False)) == []
    # already as managed: nothing to do
    assert replicas_to_manage(with_heartbeat(HEALTHY_DEFAULTS, 1, 0.5), POLICY) == []
    # only the period differs: changed too
    assert replicas_to_manage(with_heartbeat(HEALTHY_DEFAULTS, 1, 30.0), POLICY)


def test_a_master_only_gets_the_timeout_which_restarts_nothing() -> None:
    assert masters_to_prime(HEALTHY_DEFAULTS, POLICY) == [M]
    assert masters_to_prime(HEALTHY_DEFAULTS, POLICY, excluded=[M]) == []
    assert masters_to_prime(with_heartbeat(HEALTHY_DEFAULTS, 1, 0.5), POLICY) == [M]
    primed = {
        **HEALTHY_DEFAULTS,
        M: HEALTHY_DEFAULTS[M].model_copy(update={"slave_net_timeout": 1}),
    }
    assert masters_to_prime(primed, POLICY) == []
    assert masters_to_prime(HEALTHY_DEFAULTS, HeartbeatPolicy(managed=False)) == []


def test_a_replica_that_is_not_healthily_replicating_is_left_alone() -> None:
    broken = with_heartbeat(fleet(master_ok=True, replicas=BROKEN_IO), 60, 30.0)
    assert replicas_to_manage(broken, POLICY) == []
    master_down = with_heartbeat(fleet(master_ok=False, replicas={}), 60, 30.0)
    assert replicas_to_manage(master_down, POLICY) == []
    mysql = with_heartbeat(
        {
            k: s.model_copy(update={"version": "8.0.36", "flavor": "mysql"})
            for k, s in HEALTHY_DEFAULTS.items()
        },
        60,
        30.0,
    )
    assert replicas_to_manage(mysql, POLICY) == []


class Applier:
    def __init__(self, *, fail: bool = False) -> None:
        self.applied: list[tuple[InstanceKey, tuple[str, ...]]] = []
        self.fail = fail

    async def __call__(self, key: InstanceKey, statements: Sequence[str], guard: Guard) -> None:
        await guard()
        if self.fail:
            raise OrchestratorError(f"{key}: STOP SLAVE timed out")
        self.applied.append((key, tuple(statements)))


async def no_guard() -> None:
    return None


async def test_each_change_is_guarded_and_audited_and_a_failure_is_not_retried_at_once() -> None:
    publisher = FakePublisher()
    apply = Applier()
    heartbeat = ReplicaHeartbeat(
        POLICY, apply=apply, publisher=publisher, worker_id="w1", clock=lambda: NOW
    )
    r1, r2 = InstanceKey.parse(R1), InstanceKey.parse(R2)
    assert await heartbeat.keep(HEALTHY_DEFAULTS, no_guard) == [r1, M]
    statements = heartbeat_statements(POLICY)
    assert apply.applied == [(r1, statements), (M, statements[:1])]
    replica, master = publisher.audits
    assert replica.type == master.type == "replica-heartbeat" and replica.ok and master.ok
    assert "was slave_net_timeout 60, heartbeat period 30.0); its threads restarted" in (
        replica.message
    )
    assert master.message.endswith("(was slave_net_timeout 60); no thread running")
    # not changed again on the same (stale) snapshot; downtimed replicas are left alone
    assert await heartbeat.keep(HEALTHY_DEFAULTS, no_guard, downtimed=[r2]) == []
    assert await heartbeat.keep(HEALTHY_DEFAULTS, no_guard) == [r2]
    newer = {
        key: snap.model_copy(
            update={"probe": snap.probe.model_copy(update={"checked_at": NOW + timedelta(1)})}
        )
        for key, snap in HEALTHY_DEFAULTS.items()
    }
    assert await heartbeat.keep(newer, no_guard) == [r1, M]  # still differs
    failing = ReplicaHeartbeat(
        POLICY, apply=Applier(fail=True), publisher=publisher, worker_id="w1", clock=lambda: NOW
    )
    assert await failing.keep(HEALTHY_DEFAULTS, no_guard) == []
    assert not publisher.audits[-1].ok and "STOP SLAVE timed out" in publisher.audits[-1].message
    # the failed replica waits RETRY_SECONDS; the next one under the master is tried instead
    audits = len(publisher.audits)
    await failing.keep(HEALTHY_DEFAULTS, no_guard)
    assert R2 in publisher.audits[audits].message


# --- verification of a hung master ---------------------------------------------------------


async def test_a_suspect_is_verified_again_until_its_replicas_lose_it() -> None:
    still = with_heartbeat(fleet(master_ok=False, replicas={}), 1, 0.5)
    broken = with_heartbeat(fleet(master_ok=False, replicas=BROKEN_IO), 1, 0.5)
    run = Harness(now_answers=still, plan=PLANNED)
    suspect = run.suspect(still)
    assert suspect.code is AnalysisCode.UNREACHABLE_MASTER
    asyncio.get_running_loop().call_later(0.5, lambda: setattr(run, "answers", broken))
    started = time.monotonic()
    outcome = await run.worker.recover(suspect, run.guard, 7)
    took = time.monotonic() - started
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    assert 0.5 <= took < 1.0  # confirmed at the first verification after the replicas broke


async def test_re_verification_ends_after_the_replicas_net_timeout() -> None:
    still = with_heartbeat(fleet(master_ok=False, replicas={}), 1, 0.5)
    run = Harness(now_answers=still, plan=PLANNED)
    started = time.monotonic()
    assert await run.worker.recover(run.suspect(still), run.guard, 7) is None
    assert 2.0 <= time.monotonic() - started < 2.6  # slave_net_timeout 1 s + 1 s
    assert run.executor.executed == []


async def test_the_suspects_own_probe_is_bounded_and_the_replicas_decide() -> None:
    broken = fleet(master_ok=False, replicas=BROKEN_IO)
    run = Harness(now_answers=broken, plan=PLANNED)
    hung = InstanceKey.parse(MASTER)

    async def probe(key: InstanceKey, previous: InstanceSnapshot | None) -> InstanceSnapshot:
        if key == hung:
            await asyncio.sleep(10)  # a hung master never answers
        return run.answers[key]

    run.worker._probe = probe  # type: ignore[method-assign]  # the port, as wired
    started = time.monotonic()
    verified = await run.worker.verify(run.suspect(broken))
    assert time.monotonic() - started < worker_module.VERIFY_MASTER_SECONDS + 0.3
    assert verified.code is AnalysisCode.DEAD_MASTER
    snapshot = run.state.snapshots[hung]
    assert not snapshot.probe.ok and snapshot.probe.timed_out


# --- fenced when it wakes -------------------------------------------------------------------


async def test_a_hung_old_master_is_fenced_the_moment_it_answers() -> None:
    hung = with_heartbeat(fleet(master_ok=False, replicas=BROKEN_IO), 1, 0.5)
    key = InstanceKey.parse(MASTER)
    hung[key] = hung[key].model_copy(
        update={"probe": hung[key].probe.model_copy(update={"timed_out": True})}
    )
    run = Harness(now_answers=hung, plan=PLANNED)
    attempts = 0
    original = run.executor.fence

    async def fence(key: InstanceKey, guard: Guard) -> Fenced:
        nonlocal attempts
        attempts += 1
        if attempts < 3:  # still hung: the attempt times out
            await asyncio.sleep(0.05)
            return Fenced(fenced=False, detail="no answer within 1s")
        return await original(key, guard)

    run.executor.fence = fence  # type: ignore[method-assign]
    run.suspect(hung)
    run.worker.fence_on_wake(MASTER, R1, run.guard)
    [watch] = run.worker._wake_fences.values()
    await asyncio.wait_for(watch, timeout=2)
    assert attempts == 3 and run.executor.fenced == [key]
    assert any(a.type == "fence-returning-master" and a.ok for a in run.publisher.audits)


async def test_a_refused_old_master_gets_no_wake_watch() -> None:
    dead = fleet(master_ok=False, replicas=BROKEN_IO)  # refused, not timed out: it died
    run = Harness(now_answers=dead, plan=PLANNED)
    run.suspect(dead)
    run.worker.fence_on_wake(MASTER, R1, run.guard)
    assert run.worker._wake_fences == {} and run.executor.fenced == []


def test_reverify_window_is_bounded() -> None:
    assert worker_module.REVERIFY_MAX_WINDOW <= 5.0
    assert timedelta(seconds=worker_module.FENCE_ON_WAKE_WINDOW) >= timedelta(minutes=1)


class FakeLinks:
    """A kept link per master: its fence "runs" when the test wakes the server."""

    def __init__(self) -> None:
        self.kept: list[set[InstanceKey]] = []
        self.sent: list[InstanceKey] = []
        self.woken = asyncio.Event()
        self.closed = False

    def keep(self, masters: Iterable[InstanceKey]) -> None:
        self.kept.append(set(masters))

    async def fence(self, key: InstanceKey, guard: Guard, *, within: float) -> bool:
        await guard()
        self.sent.append(key)
        await self.woken.wait()
        return True

    def close(self) -> None:
        self.closed = True


async def test_the_kept_link_gets_read_only_at_once_and_the_watch_ends_with_a_full_fence() -> None:
    hung = with_heartbeat(fleet(master_ok=False, replicas=BROKEN_IO), 1, 0.5)
    key = InstanceKey.parse(MASTER)
    hung[key] = hung[key].model_copy(
        update={
            "probe": hung[key].probe.model_copy(update={"timed_out": True}),
            "replica_keys": (R1, R2),
        }
    )
    links = FakeLinks()
    run = Harness(now_answers=hung, plan=PLANNED, standby_fence=links)
    run.suspect(hung)
    fenced_when_awake = asyncio.Event()
    original = run.executor.fence

    async def fence(key: InstanceKey, guard: Guard) -> Fenced:
        if not links.woken.is_set():
            await asyncio.sleep(0.05)
            return Fenced(fenced=False, detail="no answer")
        fenced_when_awake.set()
        return await original(key, guard)

    run.executor.fence = fence  # type: ignore[method-assign]
    run.worker.fence_on_wake(MASTER, R1, run.guard)
    await asyncio.sleep(0.2)
    assert links.sent == [key] and run.executor.fenced == []  # queued, the server still hung
    links.woken.set()
    [watch] = run.worker._wake_fences.values()
    await asyncio.wait_for(watch, timeout=2)
    assert fenced_when_awake.is_set() and run.executor.fenced == [key]
    # the leader's upkeep keeps links to the instances with replicas, answering or not
    await run.worker._upkeep(run.guard)
    assert links.kept[-1] == {key}


async def test_a_completed_failover_of_a_hung_master_starts_the_wake_watch() -> None:
    hung = fleet(master_ok=False, replicas=BROKEN_IO)
    key = InstanceKey.parse(MASTER)
    hung[key] = hung[key].model_copy(
        update={"probe": hung[key].probe.model_copy(update={"timed_out": True})}
    )
    run = Harness(now_answers=hung, plan=PLANNED)
    outcome = await run.worker.recover(run.suspect(hung), run.guard, 7)
    assert outcome is not None and outcome.phase is RecoveryPhase.COMPLETED
    [watch] = run.worker._wake_fences.values()
    await asyncio.wait_for(watch, timeout=2)
    assert run.executor.fenced == [key]
