"""Recovery workers as separate processes (the drill worker) against real etcd: kill -9 and
SIGSTOP of the leader, clean hand-over, and a stress run of random kills, hangs and resignations,
with every guard()-approved action checked against the fencing tokens."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import harness
from tests.integration.coordinator_support import (
    FAST,
    STEADY,
    DrillWorker,
    Timing,
    check_fencing,
    current_leader,
    read_records,
    wait_for_lead,
)

pytestmark = pytest.mark.integration

WorkerFactory = Callable[..., list[DrillWorker]]


@pytest.fixture
def drill_workers(etcd_server: harness.EtcdLike, tmp_path: Path) -> Iterator[WorkerFactory]:
    """``drill_workers(n, timing=...)``: n started drill workers sharing one records file
    (``tmp_path / "records.jsonl"``); all closed after the test, failed or not."""
    started: list[DrillWorker] = []
    prefix = f"/drill-{uuid.uuid4().hex[:8]}"

    def start(count: int, *, timing: Timing = STEADY, **kwargs: object) -> list[DrillWorker]:
        workers = [
            DrillWorker(
                worker_id=f"w{len(started) + index}",
                endpoints=[etcd_server.endpoint],
                records=tmp_path / "records.jsonl",
                prefix=prefix,
                timing=timing,
                **kwargs,  # type: ignore[arg-type]
            )
            for index in range(count)
        ]
        started.extend(workers)
        for worker in workers:  # start them all, then wait: the interpreters boot in parallel
            worker.start(wait=False)
        for worker in workers:
            worker.wait_ready()
        return workers

    try:
        yield start
    finally:
        for worker in started:
            worker.close()


def by_id(workers: list[DrillWorker], worker_id: str) -> DrillWorker:
    return next(worker for worker in workers if worker.worker_id == worker_id)


@pytest.mark.parametrize("count", [2, 3])
def test_kill_then_hang_of_the_leader(
    drill_workers: WorkerFactory, tmp_path: Path, count: int
) -> None:
    records = tmp_path / "records.jsonl"
    workers = drill_workers(count)
    ttl = STEADY.ttl
    first = wait_for_lead(records, after=0, within=10)

    # kill -9 of the leader: a standby leads within TTL + 1 s
    killed = by_id(workers, first["worker"])
    killed_at = time.monotonic()
    killed.kill()
    second = wait_for_lead(records, after=killed_at, token_above=first["token"], within=ttl + 3)
    takeover = second["mono"] - killed_at
    assert second["worker"] != first["worker"]
    assert takeover <= ttl + 1, f"takeover took {takeover:.2f} s"
    killed.start()  # back as a standby

    # SIGSTOP of the leader past its TTL: a standby leads; the resumed one does nothing
    hung = by_id(workers, second["worker"])
    hung_at = time.monotonic()
    hung.hang()
    third = wait_for_lead(records, after=hung_at, token_above=second["token"], within=ttl + 3)
    assert third["worker"] != hung.worker_id
    time.sleep(0.3)  # the new leader acts meanwhile
    resumed_at = time.monotonic()
    hung.resume()
    time.sleep(1.0)

    stale = [record for record in read_records(records) if record["worker"] == hung.worker_id]
    acted_late = [
        record
        for record in stale
        if record["kind"] == "action"
        and record["token"] == second["token"]
        and record["acted_at"] >= hung_at
    ]
    assert not acted_late, f"the resumed worker acted on its stale token: {acted_late}"
    noticed = [
        record
        for record in stale
        if record["kind"] in ("lost", "refused")
        and record["token"] == second["token"]
        and record["mono"] >= resumed_at
    ]
    assert noticed, "the resumed worker did not notice that its leadership was gone"
    assert current_leader(records) is not None
    assert current_leader(records)["worker"] == third["worker"]  # type: ignore[index]
    report = check_fencing(read_records(records))
    assert report.tokens >= 3


def test_clean_shutdown_hands_over_in_under_a_second(
    drill_workers: WorkerFactory, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    workers = drill_workers(3)
    lead = wait_for_lead(records, after=0, within=10)
    for _ in range(2):
        leaving = by_id(workers, lead["worker"])
        asked_at = time.monotonic()
        leaving.stop()  # SIGTERM: resign and revoke the lease
        lead = wait_for_lead(records, after=asked_at, token_above=lead["token"], within=3)
        handover = lead["mono"] - asked_at
        assert handover < 1.0, f"hand-over took {handover:.2f} s"
    check_fencing(read_records(records))


def test_stress_random_kills_hangs_and_resignations(
    drill_workers: WorkerFactory, tmp_path: Path
) -> None:
    """200 rounds; in each, a random fault hits (usually) the current leader: SIGKILL (then a
    restart), SIGSTOP for 0.2-2.5 TTLs, or a resignation; a round lasts 0.05-0.35 s."""
    records = tmp_path / "records.jsonl"
    workers = drill_workers(4, timing=FAST, action_interval=0.01, rejoin_after=0.3)
    rng = random.Random(20261125)
    wait_for_lead(records, after=0, within=10)
    hung_until: dict[str, float] = {}
    faults = {"kill": 0, "hang": 0, "resign": 0}
    for _ in range(200):
        now = time.monotonic()
        for worker in workers:  # resume the hangs that are over; restart the killed
            if worker.worker_id in hung_until and now >= hung_until[worker.worker_id]:
                worker.resume()
                del hung_until[worker.worker_id]
            if not worker.is_running:
                worker.start(wait=False)
        holder = current_leader(records)
        candidates = [w for w in workers if w.is_running and w.worker_id not in hung_until]
        leader = next((w for w in candidates if holder and w.worker_id == holder["worker"]), None)
        target = leader if leader is not None and rng.random() < 0.8 else None
        if target is None and candidates:
            target = rng.choice(candidates)
        if target is not None and target.probe():
            fault = rng.choices(["kill", "hang", "resign"], weights=[3, 3, 4])[0]
            faults[fault] += 1
            if fault == "kill":
                target.kill()
            elif fault == "hang":
                target.hang()
                hung_until[target.worker_id] = now + FAST.ttl * rng.uniform(0.2, 2.5)
            else:
                target.resign()
        time.sleep(rng.uniform(0.05, 0.35))
    for worker in workers:
        if worker.worker_id in hung_until:
            worker.resume()
    time.sleep(FAST.ttl + 0.5)  # resumed workers notice; one leads
    for worker in workers:
        worker.stop()

    report = check_fencing(read_records(records))
    # each kind of fault hit often enough to mean something (how many depends on which targets
    # answered their probe in time: a loaded machine gives fewer)
    assert min(faults.values()) >= 20, faults
    assert report.tokens >= 30, report  # leadership really changed hands many times
    assert report.leaders == 4
    assert report.actions >= 300
