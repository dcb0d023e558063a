"""Recovery routes and CLI commands: forwarded to a (fake) active recovery worker over a real
nats-server, acknowledgements and recovery state over a real store (SQLite and PostgreSQL).

The fake worker answers ``orchestrator.v1.command.*`` as orchestrator_recovery.operations.commands
does (same operations, same reply details); each test says what it answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import RecoveryFilter, RecoveryRecord, Store
from orchestrator_shared.bus import CommandReply, CommandRequest, Subjects
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from tests.integration.api_support import run_cli, serve
from tests.integration.test_store import FLEET
from tests.unit.test_wire_samples import load_sample

pytestmark = pytest.mark.integration

Answer = Callable[[CommandRequest], CommandReply]


def key_json(text: str) -> dict[str, Any]:
    key = InstanceKey.parse(text)
    return {"Hostname": key.host, "Port": key.port}


def recovered(request: CommandRequest) -> CommandReply:
    """The worker's reply to a completed recover / force-master-failover: db2 promoted."""
    return CommandReply(
        ok=True,
        operation=request.operation,
        message=f"Recovered {request.instance}; successor: {request.destination or 'db2:3306'}",
        details={
            "Id": "uid-forced",
            "SuccessorKey": key_json(request.destination or "db2:3306"),
            "LostReplicas": [key_json("db3:3306")],
            "FencingToken": 7,
        },
    )


def refused(request: CommandRequest) -> CommandReply:
    return CommandReply(
        ok=False, operation=request.operation, error="db1:3306 is not analysed as failed"
    )


@dataclass
class FakeWorker:
    """Subscribed to every command; answers with ``answers[operation]``; records requests."""

    answers: dict[str, Answer] = field(default_factory=dict)
    seen: list[CommandRequest] = field(default_factory=list)
    disabled: bool = False

    def reply(self, request: CommandRequest) -> CommandReply:
        self.seen.append(request)
        operation = request.operation
        if operation in self.answers:
            return self.answers[operation](request)
        if operation in {"disable-global-recoveries", "enable-global-recoveries"}:
            self.disabled = operation.startswith("disable")
        if operation.endswith("global-recoveries"):
            state = "disabled" if self.disabled else "enabled"
            return CommandReply(
                ok=True, operation=operation, message=f"Global recoveries {state}", details=state
            )
        if operation in {"ack-cluster-recoveries", "ack-all-recoveries"}:
            return CommandReply(ok=True, operation=operation, message="acknowledged", details=1)
        return CommandReply(ok=False, operation=operation, error=f"{operation} not available")

    def ops(self) -> list[tuple[str, str, str, str]]:
        return [(r.operation, r.instance, r.destination, r.cluster) for r in self.seen]


@dataclass
class Harness:
    api: httpx.AsyncClient
    worker: FakeWorker
    store: Store
    context: ApiContext
    start_worker: Callable[[], Awaitable[None]]
    stop_worker: Callable[[], Awaitable[None]]


@pytest.fixture
async def harness(store: Store, nats_server: Any) -> AsyncIterator[Harness]:
    await store.write_batch(FLEET)  # db1:3306 (alias shop) <- db2, db3; db9 alone
    await store.set_cluster_alias("db1:3306", "shop")
    worker = FakeWorker()
    nc = await nats.connect(nats_server.url)

    async def answer(msg: Any) -> None:
        reply = worker.reply(CommandRequest.model_validate_json(msg.data))
        await msg.respond(reply.to_json())

    subscriptions: list[Any] = []

    async def start_worker() -> None:
        subscriptions.append(await nc.subscribe(Subjects().command("*"), cb=answer))
        await nc.flush()

    async def stop_worker() -> None:
        while subscriptions:
            await subscriptions.pop().unsubscribe()
        await nc.flush()

    await start_worker()
    requester = NatsRequester(Subjects())
    await requester.connect([nats_server.url])
    context = ApiContext(
        settings=Settings.model_validate({"RecoveryPeriodBlockSeconds": 600}),
        store=store,
        discovery=requester,
    )
    transport = httpx.ASGITransport(app=create_app(context))

    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
            yield Harness(api, worker, store, context, start_worker, stop_worker)
    finally:
        await requester.close()
        await nc.close()


NOW = datetime.now(UTC).replace(microsecond=0)


def k(text: str) -> InstanceKey:
    return InstanceKey.parse(text)


def record(uid: str, key: str, cluster: str, **fields: Any) -> RecoveryRecord:
    values: dict[str, Any] = {
        "analysis_code": "DeadMaster",
        "started_at": NOW - timedelta(seconds=30),
        "type": "MasterRecovery",
        "recovery_type": "completed",
        "is_active": False,
        "is_successful": True,
    }
    values.update(fields)
    return RecoveryRecord(uid=uid, key=InstanceKey.parse(key), cluster=cluster, **values)


# --- manual recoveries ----------------------------------------------------------------------


async def test_recover_answers_the_promoted_key(harness: Harness) -> None:
    api, worker = harness.api, harness.worker
    worker.answers["recover"] = recovered
    answer = await api.post("/api/recover/db1/3306")
    assert answer.status_code == 200
    assert answer.json() == {
        "Code": "OK",
        "Message": "Recovery executed on db1:3306",
        "Details": {"Hostname": "db2", "Port": 3306},
    }
    # GET as orchestrator; a candidate; recover-lite carries skipProcesses (hooks run anyway)
    with_candidate = await api.get("/api/recover/db1/3306/db3/3306")
    assert with_candidate.json()["Details"] == {"Hostname": "db3", "Port": 3306}
    assert (await api.post("/api/recover-lite/db1/3306")).status_code == 200
    assert (await api.get("/api/recover/db1/3306?skipProcesses=true")).status_code == 200
    assert worker.ops() == [
        ("recover", "db1:3306", "", "db1:3306"),
        ("recover", "db1:3306", "db3:3306", "db1:3306"),
        ("recover", "db1:3306", "", "db1:3306"),
        ("recover", "db1:3306", "", "db1:3306"),
    ]
    assert [r.arguments for r in worker.seen] == [
        {},
        {},
        {"skipProcesses": "true"},
        {"skipProcesses": "true"},
    ]
    assert {r.requested_by for r in worker.seen} == {"anonymous"}


async def test_recover_errors(harness: Harness) -> None:
    api, worker = harness.api, harness.worker
    worker.answers["recover"] = refused
    answer = await api.post("/api/recover/db1/3306")
    assert answer.status_code == 409
    assert answer.json() == {
        "Code": "ERROR",
        "Message": "recover refused: db1:3306 is not analysed as failed",
        "Details": None,
    }
    assert (await api.post("/api/recover/db1/x")).status_code == 400
    assert (await api.post("/api/recover/nowhere/3306")).status_code == 404
    assert (await api.post("/api/recover/db1/3306/nowhere/3306")).status_code == 404
    assert (await api.post("/api/recover/db1/3306/db1/3306")).status_code == 400
    assert len(worker.seen) == 1  # nothing malformed or unknown was forwarded
    await harness.stop_worker()
    nobody = await api.post("/api/recover/db1/3306")
    assert nobody.status_code == 503
    assert "no active recovery worker is running" in nobody.json()["Message"]


async def test_a_recovery_that_promotes_nobody_says_so(harness: Harness) -> None:
    def moved(request: CommandRequest) -> CommandReply:
        details = {"Id": "u", "SuccessorKey": None, "LostReplicas": [], "FencingToken": 3}
        return CommandReply(
            ok=True, operation="recover", message="replicas relocated", details=details
        )

    harness.worker.answers["recover"] = moved
    answer = (await harness.api.post("/api/recover/db2/3306")).json()
    assert answer["Code"] == "OK"
    assert answer["Details"] is None
    assert "no instance promoted" in answer["Message"]


async def test_force_master_failover_by_hint_or_member(harness: Harness) -> None:
    api, worker = harness.api, harness.worker
    worker.answers["force-master-failover"] = recovered
    by_alias = await api.post("/api/force-master-failover/shop")
    assert by_alias.status_code == 200
    body = by_alias.json()
    assert (body["Code"], body["Message"]) == ("OK", "Master failed over")
    details = body["Details"]
    assert details["SuccessorKey"] == {"Hostname": "db2", "Port": 3306}
    assert details["LostReplicas"] == [{"Hostname": "db3", "Port": 3306}]
    assert details["UID"] == "uid-forced"
    assert set(load_sample("audit-recovery.json")[0]) <= set(details)  # a TopologyRecovery
    by_member = await api.get("/api/force-master-failover/db2/3306")
    assert by_member.json()["Details"]["SuccessorKey"] == {"Hostname": "db2", "Port": 3306}
    # the stored row is used once the recovery events reached the store
    stored_id = await harness.store.record_recovery(record("uid-forced", "db1:3306", "db1:3306"))
    stored = (await api.post("/api/force-master-failover/db1:3306")).json()["Details"]
    assert stored["Id"] == stored_id
    assert worker.ops() == [("force-master-failover", "db1:3306", "", "db1:3306")] * 3
    assert (await api.post("/api/force-master-failover/nosuch")).status_code == 404
    assert (await api.post("/api/force-master-failover/db1/x")).status_code == 400
    worker.answers["force-master-failover"] = refused
    assert (await api.post("/api/force-master-failover/shop")).status_code == 409


# --- global switch --------------------------------------------------------------------------


async def test_global_recoveries_switch(harness: Harness) -> None:
    api = harness.api
    assert (await api.get("/api/check-global-recoveries")).json()["Details"] == "enabled"
    disabled = (await api.post("/api/disable-global-recoveries")).json()
    assert (disabled["Code"], disabled["Details"]) == ("OK", "disabled")
    assert (await api.get("/api/check-global-recoveries")).json() == {
        "Code": "OK",
        "Message": "Global recoveries disabled",
        "Details": "disabled",
    }
    assert not (await harness.store.global_recoveries()).enabled
    assert (await api.get("/api/enable-global-recoveries")).json()["Details"] == "enabled"
    assert (await harness.store.global_recoveries()).enabled
    assert (await api.post("/api/check-global-recoveries")).status_code == 405  # a read
    await harness.stop_worker()
    assert (await api.get("/api/check-global-recoveries")).status_code == 503


async def test_switch_and_recover_need_the_admin_role(store: Store) -> None:
    settings = Settings.model_validate(
        {"AuthenticationMethod": "token", "APITokens": {"adm": "admin", "rd": "read"}}
    )
    context = ApiContext(settings=settings, store=store)
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
        read = {"Authorization": "Bearer rd"}
        for path in (
            "/api/disable-global-recoveries",
            "/api/recover/db1/3306",
            "/api/ack-all-recoveries?comment=x",
            "/api/force-master-failover/shop",
        ):
            assert (await api.post(path, headers=read)).status_code == 403, path
        assert (await api.get("/api/blocked-recoveries", headers=read)).status_code == 200
        assert (await api.get("/api/blocked-recoveries")).status_code == 401


# --- acknowledgements -----------------------------------------------------------------------


async def test_acks_need_a_comment(harness: Harness) -> None:
    for path in (
        "/api/ack-all-recoveries",
        "/api/ack-recovery/cluster/shop?comment=",
        "/api/ack-recovery/cluster/alias/shop?comment=%20",
        "/api/ack-recovery/instance/db1/3306",
        "/api/ack-recovery/1",
        "/api/ack-recovery/uid/r-1",
    ):
        answer = await harness.api.post(path)
        assert answer.status_code == 400, path
        assert answer.json()["Message"] == "No acknowledge comment given"
    assert harness.worker.seen == []


async def test_cluster_ack_marks_the_store_and_lifts_the_block(harness: Harness) -> None:
    api, store, worker = harness.api, harness.store, harness.worker
    # a completed master recovery, recorded under the old master's name with the alias that
    # has since moved to the new master (db1), and one of another cluster
    old = await store.record_recovery(
        record("r-old", "db0:3306", "db0:3306", cluster_alias="shop", successor_key=k("db1:3306"))
    )
    other = await store.record_recovery(record("r-other", "db9:3306", "db9:3306"))
    answer = await api.post("/api/ack-recovery/cluster/shop", params={"comment": "looked"})
    assert answer.status_code == 200
    assert answer.json() == {
        "Code": "OK",
        "Message": "Acknowledged cluster recoveries",
        "Details": "db1:3306",
    }
    acked = {r.id: r for r in await store.recoveries(RecoveryFilter())}
    assert acked[old].acknowledged
    assert (acked[old].acknowledged_by, acked[old].acknowledged_comment) == ("anonymous", "looked")
    assert acked[old].acknowledged_at is not None
    assert not acked[other].acknowledged
    assert sorted(worker.ops()) == [
        ("ack-cluster-recoveries", "", "", "db0:3306"),
        ("ack-cluster-recoveries", "", "", "db1:3306"),
    ]
    audit = await store.audit_log(type="ack-recovery")
    assert audit and "looked" in audit[0].message
    assert (await api.post("/api/ack-recovery/cluster/nosuch?comment=x")).status_code == 404
    # by alias: the same
    worker.seen.clear()
    by_alias = await api.post("/api/ack-recovery/cluster/alias/shop?comment=again")
    assert by_alias.json()["Details"] == "db1:3306"
    assert ("ack-cluster-recoveries", "", "", "db1:3306") in worker.ops()
    assert (await api.post("/api/ack-recovery/cluster/alias/nosuch?comment=x")).status_code == 404


async def test_ack_one_recovery_lifts_only_a_cluster_left_unblocked(harness: Harness) -> None:
    api, store, worker = harness.api, harness.store, harness.worker
    first = await store.record_recovery(record("r-1", "db1:3306", "db1:3306"))
    await store.record_recovery(record("r-2", "db1:3306", "db1:3306"))
    answer = await api.post(f"/api/ack-recovery/{first}?comment=one")
    assert answer.json() == {
        "Code": "OK",
        "Message": "Acknowledged recovery",
        "Details": str(first),
    }
    assert worker.seen == []  # r-2 still holds the block
    by_uid = await api.post("/api/ack-recovery/uid/r-2?comment=two")
    assert by_uid.json()["Details"] == "r-2"
    assert worker.ops() == [("ack-cluster-recoveries", "", "", "db1:3306")]
    assert all(r.acknowledged for r in await store.recoveries(RecoveryFilter()))
    assert (await api.post("/api/ack-recovery/999?comment=x")).status_code == 404
    assert (await api.post("/api/ack-recovery/uid/nope?comment=x")).status_code == 404
    for bad in ("abc", "-1", "\u00b2", str(2**64)):
        answer = await api.post(f"/api/ack-recovery/{bad}?comment=x")
        assert answer.status_code == 400, bad


async def test_instance_and_all_acks(harness: Harness) -> None:
    api, store, worker = harness.api, harness.store, harness.worker
    await store.record_recovery(record("r-1", "db0:3306", "db0:3306"))  # a forgotten instance
    await store.record_recovery(record("r-9", "db9:3306", "db9:3306"))
    answer = await api.post("/api/ack-recovery/instance/db0/3306?comment=gone")
    assert answer.json() == {
        "Code": "OK",
        "Message": "Acknowledged instance recoveries",
        "Details": {"Hostname": "db0", "Port": 3306},
    }
    assert worker.ops() == [("ack-cluster-recoveries", "", "", "db0:3306")]
    assert (await api.post("/api/ack-recovery/instance/dbx/3306?comment=x")).status_code == 404
    assert (await api.post("/api/ack-recovery/instance/db0/x?comment=x")).status_code == 400
    worker.seen.clear()
    everything = await api.get("/api/ack-all-recoveries", params={"comment": "all done"})
    assert everything.json() == {
        "Code": "OK",
        "Message": "Acknowledged all recoveries",
        "Details": "all done",
    }
    assert worker.ops() == [("ack-all-recoveries", "", "", "")]
    assert all(r.acknowledged for r in await store.recoveries(RecoveryFilter()))


async def test_without_a_worker_the_ack_is_stored_but_the_answer_says_the_block_stays(
    harness: Harness,
) -> None:
    api, store = harness.api, harness.store
    await store.record_recovery(record("r-1", "db1:3306", "db1:3306"))
    await harness.stop_worker()
    for path in ("/api/ack-recovery/cluster/shop?comment=x", "/api/ack-all-recoveries?comment=x"):
        answer = await api.post(path)
        assert answer.status_code == 503, path
        message = answer.json()["Message"]
        assert "was NOT lifted" in message
        assert "no active recovery worker is running" in message
    assert all(r.acknowledged for r in await store.recoveries(RecoveryFilter()))
    # a refusing worker: 409, said the same way
    harness.worker.answers["ack-all-recoveries"] = refused
    await harness.start_worker()
    refused_answer = await api.post("/api/ack-all-recoveries?comment=x")
    assert refused_answer.status_code == 409
    assert "was NOT lifted" in refused_answer.json()["Message"]


# --- recovery state -------------------------------------------------------------------------


async def test_active_recent_and_blocked_recoveries(harness: Harness) -> None:
    api, store = harness.api, harness.store
    active = await store.record_recovery(
        record("r-active", "db1:3306", "db1:3306", is_active=True, recovery_type="started")
    )
    old = await store.record_recovery(
        record("r-old", "db1:3306", "db1:3306", started_at=NOW - timedelta(hours=2))
    )
    blocked = await store.record_recovery(
        record(
            "r-blocked",
            "db1:3306",
            "db1:3306",
            recovery_type="blocked",
            is_successful=False,
            ended_at=NOW,
        )
    )
    await store.record_recovery(record("r-9", "db9:3306", "db9:3306", recovery_type="blocked"))

    active_list = (await api.get("/api/active-cluster-recovery/db1:3306")).json()
    assert [r["Id"] for r in active_list] == [active]
    assert (await api.get("/api/active-cluster-recovery/shop")).json() == active_list
    assert (await api.get("/api/active-cluster-recovery/unknown:1")).json() == []
    recent = (await api.get("/api/recently-active-cluster-recovery/db1:3306")).json()
    assert [r["Id"] for r in recent] == [active]  # old is beyond RecoveryPeriodBlockSeconds
    assert old not in [r["Id"] for r in recent]
    by_instance = (await api.get("/api/recently-active-instance-recovery/db1/3306")).json()
    assert [r["Id"] for r in by_instance] == [active]
    assert (await api.get("/api/recently-active-instance-recovery/db1/x")).status_code == 400

    blocked_list = (await api.get("/api/blocked-recoveries")).json()
    assert [b["ClusterName"] for b in blocked_list] == ["db9:3306", "db1:3306"]
    of_cluster = (await api.get("/api/blocked-recoveries/cluster/db1:3306")).json()
    assert of_cluster == [
        {
            "FailedInstanceKey": {"Hostname": "db1", "Port": 3306},
            "ClusterName": "db1:3306",
            "Analysis": "DeadMaster",
            "LastBlockedTimestamp": NOW.strftime("%Y-%m-%d %H:%M:%S"),
            "BlockingRecoveryId": old,
        }
    ]
    assert blocked > old
    # acknowledging the cluster clears its blocked list
    await api.post("/api/ack-recovery/cluster/db1:3306?comment=ok")
    assert (await api.get("/api/blocked-recoveries/cluster/db1:3306")).json() == []
    assert len((await api.get("/api/blocked-recoveries")).json()) == 1


# --- the CLI against a served API -----------------------------------------------------------


async def test_cli_recovery_commands(harness: Harness) -> None:
    harness.worker.answers["recover"] = recovered
    harness.worker.answers["force-master-failover"] = recovered
    await harness.store.record_recovery(record("r-1", "db1:3306", "db1:3306"))
    async with serve(harness.context) as api:

        async def cli(*args: str) -> tuple[int, str]:
            return await asyncio.to_thread(run_cli, api, *args)

        assert await cli("-c", "recover", "-i", "db1:3306") == (0, "db2:3306\n")
        assert await cli("-c", "recover", "-i", "db1:3306", "-d", "db3:3306") == (0, "db3:3306\n")
        assert await cli("-c", "force-master-failover", "-alias", "shop") == (0, "db2:3306\n")
        assert await cli("-c", "check-global-recoveries") == (0, "enabled\n")
        assert await cli("-c", "disable-global-recoveries") == (0, "disabled\n")
        assert await cli("-c", "check-global-recoveries") == (0, "disabled\n")
        assert await cli("-c", "ack-cluster-recoveries", "-alias", "shop") == (2, "")
        assert await cli(
            "-c", "ack-cluster-recoveries", "-alias", "shop", "--reason", "seen it"
        ) == (0, "db1:3306\n")
        acked = await harness.store.recoveries(RecoveryFilter(uid="r-1"))
        assert acked[0].acknowledged_comment == "seen it"
        harness.worker.answers["recover"] = refused
        assert await cli("-c", "recover", "-i", "db1:3306") == (1, "")
