"""One bug never stops all failover (issue 13 §2): an unexpected exception in one cluster's
analysis, event or recovery is logged at ERROR, counted and audited, and the leader's loop goes
on recovering the other clusters. Fakes for the ports (as in test_recovery_worker)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import pytest

from orchestrator_recovery.failover import worker as worker_module
from orchestrator_recovery.failover.worker import cluster_label, clusters_of
from orchestrator_shared.analysis import analyze
from orchestrator_shared.events import AnalysisEvent, RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import GaleraState, InstanceSnapshot
from tests.unit.test_analysis_scenarios import instance_snapshot
from tests.unit.test_recovery_worker import BROKEN_IO, GTID, PLANNED, Harness, fleet

pytestmark = pytest.mark.unit

BAD = fleet(master_ok=False, replicas=BROKEN_IO, master="bad:1", members=("bad:2", "bad:3"))
GOOD = fleet(master_ok=False, replicas=BROKEN_IO, master="good:1", members=("good:2", "good:3"))


def two_clusters() -> Harness:
    run = Harness(now_answers={**BAD, **GOOD}, plan=PLANNED)
    for snapshot in [*BAD.values(), *GOOD.values()]:
        run.state.put(snapshot)
    run.state.loaded.set()
    return run


def completed(run: Harness, cluster: str) -> bool:
    return any(
        event.phase is RecoveryPhase.COMPLETED and event.data.cluster == cluster
        for event in run.publisher.recoveries
    )


async def lead_until(run: Harness, done: Any, *, seconds: float = 5.0) -> asyncio.Task[None]:
    """Run the leader's loop until ``done()``; the loop's task, still running (asserted)."""
    task = asyncio.create_task(run.worker.lead(run.guard, 7))
    async with asyncio.timeout(seconds):
        while not done():
            assert not task.done(), task
            await asyncio.sleep(0.02)
    assert not task.done()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cluster_whose_analysis_raises_does_not_stop_the_others_failover(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def analyze_with_a_bug(snapshots: Iterable[InstanceSnapshot], **kwargs: Any) -> Any:
        seen = list(snapshots)
        if any(s.instance_key.host == "bad" for s in seen):
            raise KeyError("a bug that only this cluster's snapshots trip")
        return analyze(seen, **kwargs)

    monkeypatch.setattr(worker_module, "analyze", analyze_with_a_bug)
    run = two_clusters()
    caplog.set_level(logging.ERROR, logger=worker_module.__name__)
    task = await lead_until(run, lambda: completed(run, "good:1"))
    # several passes: the failing cluster is counted every time, audited once
    await asyncio.sleep(0.6)
    await stop(task)
    assert not completed(run, "bad:1")
    assert run.worker.internal_errors["bad:1"] >= 2
    assert run.worker.internal_errors[""] >= 2  # the whole fleet's analysis, each pass
    audits = [a for a in run.publisher.audits if a.type == "internal-error"]
    assert sorted(a.cluster for a in audits) == ["", "bad:1"]
    assert all(not a.ok and "KeyError" in a.message for a in audits)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("cluster bad:1: analysing failed" in r.getMessage() for r in errors)
    assert all(r.exc_info for r in errors)


async def test_a_cluster_whose_event_or_recovery_raises_does_not_stop_the_others() -> None:
    run = two_clusters()

    async def publish_with_a_bug(event: AnalysisEvent) -> bool:
        if event.cluster == "bad:1":
            raise RuntimeError("cannot serialise this cluster's problems")
        run.publisher.analyses.append(event)
        return True

    planned = run.planner.plan

    def plan_with_a_bug(analysis: Any, *args: Any, **kwargs: Any) -> Any:
        if analysis.cluster_name == "bad:1":
            raise ZeroDivisionError("a planner bug")
        return planned(analysis, *args, **kwargs)

    run.publisher.analysis = publish_with_a_bug  # type: ignore[method-assign]
    run.planner.plan = plan_with_a_bug  # type: ignore[method-assign]
    task = await lead_until(run, lambda: completed(run, "good:1"))
    await stop(task)
    assert [event.cluster for event in run.publisher.analyses] == ["good:1"]
    assert run.worker.internal_errors["bad:1"] >= 1
    assert not completed(run, "bad:1")


async def test_leaving_the_loop_waits_for_the_recoveries_it_started() -> None:
    run = two_clusters()
    started = asyncio.Event()
    ended: list[str] = []

    async def slow_fail_over(plan: object, guard: Any, **_: Any) -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.1)  # e.g. killing its statement on the server
            ended.append("stopped")
        raise AssertionError("not reached")

    run.executor.fail_over_master = slow_fail_over  # type: ignore[method-assign]
    task = asyncio.create_task(run.worker.lead(run.guard, 7))
    await asyncio.wait_for(started.wait(), 5)
    await stop(task)
    # by the time the loop has ended, the recoveries it ran have ended too
    assert ended == ["stopped", "stopped"]


def test_clusters_are_the_instances_linked_by_replication() -> None:
    groups = clusters_of([*BAD.values(), *GOOD.values()])
    found = sorted(sorted(str(s.instance_key) for s in group) for group in groups)
    assert found == [["bad:1", "bad:2", "bad:3"], ["good:1", "good:2", "good:3"]]
    assert sorted(cluster_label(group) for group in groups) == ["bad:1", "good:1"]


def test_the_nodes_of_one_galera_cluster_are_one_cluster() -> None:
    def node(key: str, uuid: str, master: str = "") -> InstanceSnapshot:
        galera = GaleraState(cluster_state_uuid=uuid, local_state="Synced")
        fields = {"master": master, "using_gtid": "Slave_Pos"} if master else {}
        return instance_snapshot(key, fields).model_copy(update={"galera": galera})

    galera = [node("g:3", "a"), node("g:1", "a"), node("g:2", "a"), node("h:1", "b")]
    replica = instance_snapshot("r:1", {"master": "g:3", "using_gtid": "Slave_Pos"})
    groups = clusters_of([*galera, replica])
    found = sorted(sorted(str(s.instance_key) for s in group) for group in groups)
    assert found == [["g:1", "g:2", "g:3", "r:1"], ["h:1"]]
    assert sorted(cluster_label(group) for group in groups) == ["g:1", "h:1"]
    # nodes replicating from an outside master: the cluster is named after that master
    outside = [instance_snapshot("z:1", {}), node("g:1", "a", "z:1"), node("g:2", "a")]
    assert [cluster_label(group) for group in clusters_of(outside)] == ["z:1"]


async def test_one_clusters_bad_record_in_fencing_returning_masters_does_not_skip_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = two_clusters()
    await run.worker.recover(run.suspect(GOOD), run.guard, 7)
    # the failed master of good:1 restarts writable
    run.answers = {**run.answers, InstanceKey.parse("good:1"): instance_snapshot("good:1", GTID)}
    real_view = run.control.fencing_view

    async def view_with_a_broken_record() -> Any:
        records, promotions = await real_view()
        broken = dataclasses.replace(next(iter(records.values())), failed="not a key::")
        return {"broken:1": broken, **records}, promotions

    run.control.fencing_view = view_with_a_broken_record  # type: ignore[method-assign]
    assert await run.worker.keep_demoted_fenced(run.guard) == ["good:1"]
    assert "cluster broken:1: fencing its returning old master: invalid instance key" in (
        caplog.text
    )
