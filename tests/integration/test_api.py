"""The REST API on real snapshots of a real sandbox, in a real store (SQLite and PostgreSQL).

Snapshots come from discovery's own prober run against a 4-node MariaDB sandbox and are written
with the store's batch write, as the consumer does; the app is driven over ASGI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from orchestrator_adapters.etcd import EtcdClient, EtcdOptions
from orchestrator_adapters.probe import ConnectionPool, ProbeOptions, Prober
from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.leadership import LeaderWatch
from orchestrator_api.store import FailureDetection, RecoveryRecord, Store, open_store
from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.bus import LeaderEvent, LeaderIdentity, Subjects
from orchestrator_shared.config import Settings
from orchestrator_shared.etcd.recovery import OperatorState
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.streams import events_stream_config
from tests.harness.ports import free_port
from tests.integration.test_store import snapshot
from tests.unit.test_wire_samples import EXTRA_FIELDS, assert_same_shape, load_sample

pytestmark = pytest.mark.integration

TOPOLOGY_USER = {"MySQLTopologyUser": "orchestrator", "MySQLTopologyPassword": "orch_topology"}


@pytest.fixture(scope="module")
def star(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return module_sandbox_factory(nodes=4)


async def probe_all(sandbox: Sandbox) -> list[InstanceSnapshot]:
    options = ProbeOptions.from_settings(Settings.model_validate(TOPOLOGY_USER))
    prober = Prober(options, ConnectionPool(options))
    try:
        snapshots = []
        for node in sandbox.nodes:
            key = InstanceKey.parse(node.key)
            first = await prober.probe(key)
            snapshots.append(await prober.probe(key, first))  # the full batch
        return snapshots
    finally:
        prober.close()


def client_for(
    store: Store,
    *,
    short_path: bool = True,
    clock: Callable[[], datetime] | None = None,
    **settings: Any,
) -> httpx.AsyncClient:
    context = ApiContext(settings=Settings.model_validate(settings), store=store)
    if clock is not None:
        context.clock = clock
    transport = httpx.ASGITransport(app=create_app(context, short_path=short_path))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


@pytest.fixture
async def api(star: Sandbox, store: Store) -> AsyncIterator[httpx.AsyncClient]:
    await store.write_batch(await probe_all(star))
    async with client_for(store) as client:
        yield client


async def test_clusters_and_hints(api: httpx.AsyncClient, star: Sandbox) -> None:
    master = star.master.key
    assert (await api.get("/api/clusters")).json() == [master]
    infos = (await api.get("/api/clusters-info")).json()
    assert_same_shape(infos, load_sample("clusters-info.json"))
    assert infos[0]["ClusterName"] == master
    assert infos[0]["CountInstances"] == 4
    # a hint resolves by cluster name, by alias, and by any member's key
    alias = (await api.post(f"/api/set-cluster-alias/{master}", params={"alias": "sb"})).json()
    assert alias["Code"] == "OK"
    by_name = (await api.get(f"/api/cluster/{master}")).json()
    by_alias = (await api.get("/api/cluster/sb")).json()
    by_member = (await api.get(f"/api/cluster/{star.nodes[2].key}")).json()
    assert (
        [i["Key"] for i in by_name] == [i["Key"] for i in by_alias] == [i["Key"] for i in by_member]
    )
    assert len(by_name) == 4
    assert_same_shape(by_name, load_sample("cluster.json"), extra=EXTRA_FIELDS)
    info = (await api.get("/api/cluster-info/sb")).json()
    assert (info["ClusterName"], info["ClusterAlias"]) == (master, "sb")
    assert (await api.get("/api/cluster/alias/sb")).status_code == 200
    master_json = (await api.get("/api/master/sb")).json()
    assert master_json["Key"] == {"Hostname": "127.0.0.1", "Port": star.master.port}
    assert master_json["ReadOnly"] is False


async def test_the_short_path_answers_as_the_routes_do(star: Sandbox, store: Store) -> None:
    await store.write_batch(await probe_all(star))
    master, replica = star.master.key, star.nodes[2].key
    frozen = datetime.now(UTC)
    paths = [
        f"/api/cluster/{master}",
        "/api/cluster/sb",
        f"/api/cluster/{replica}",
        "/api/cluster/alias/sb",
        f"/api/instance/127.0.0.1/{star.nodes[1].port}",
        "/api/clusters-info",
        # not plain successes: the short path leaves them to the application
        "/api/cluster/nosuch",
        "/api/cluster/alias/nosuch",
        "/api/instance/127.0.0.1/1",
        "/api/instance/127.0.0.1/notaport",
        "/api/instance/[::1/3306",
    ]
    answers: dict[bool, list[tuple[int, bytes]]] = {}
    for short in (True, False):
        async with client_for(store, short_path=short, clock=lambda: frozen) as client:
            await client.post(f"/api/set-cluster-alias/{master}", params={"alias": "sb"})
            replies = [await client.get(path) for path in paths]
            answers[short] = [(reply.status_code, reply.content) for reply in replies]
            assert all(reply.headers["content-type"] == "application/json" for reply in replies)
    assert answers[True] == answers[False]
    assert [status for status, _ in answers[True]] == [200] * 6 + [404, 404, 404, 400, 400]
    # the same access rules: a read token is needed when tokens are configured
    async with client_for(store, AuthenticationMethod="token", APITokens={"r": "read"}) as client:
        assert (await client.get("/api/cluster/sb")).status_code == 401
        authorized = await client.get("/api/cluster/sb", headers={"Authorization": "Bearer r"})
        assert authorized.status_code == 200


async def test_instance_shapes_and_values(api: httpx.AsyncClient, star: Sandbox) -> None:
    replica = star.nodes[1]
    answer = await api.get(f"/api/instance/127.0.0.1/{replica.port}")
    assert answer.status_code == 200
    instance = answer.json()
    assert_same_shape(instance, load_sample("instance.json"), extra=EXTRA_FIELDS)
    assert instance["MasterKey"] == {"Hostname": "127.0.0.1", "Port": star.master.port}
    assert instance["ReadOnly"] is True
    assert instance["UsingMariaDBGTID"] is True
    assert instance["ReplicationIOThreadState"] == 1
    assert instance["ServerID"] == replica.server_id
    assert instance["ReplicationDepth"] == 1
    replicas = (await api.get(f"/api/instance-replicas/127.0.0.1/{star.master.port}")).json()
    assert sorted(r["Key"]["Port"] for r in replicas) == [n.port for n in star.nodes[1:]]
    everything = (await api.get("/api/all-instances")).json()
    assert len(everything) == 4
    found = (await api.get("/api/search", params={"s": str(star.nodes[3].port)})).json()
    assert [f["Key"]["Port"] for f in found] == [star.nodes[3].port]
    masters = (await api.get("/api/masters")).json()
    assert [m["Key"]["Port"] for m in masters] == [star.master.port]


async def test_topology_text(api: httpx.AsyncClient, star: Sandbox) -> None:
    answer = (await api.get(f"/api/topology/{star.master.key}")).json()
    assert answer["Code"] == "OK"
    lines = answer["Details"].splitlines()
    assert lines[0].startswith(f"{star.master.key}   [0s,ok,")
    assert all(line.startswith("+ 127.0.0.1:") for line in lines[1:])
    assert len(lines) == 4
    tabulated = (await api.get(f"/api/topology-tabulated/{star.master.key}")).json()
    assert "|0s|ok|" in tabulated["Details"]


async def test_downtime_and_candidates(api: httpx.AsyncClient, star: Sandbox) -> None:
    port = star.nodes[3].port
    begun = await api.get(f"/api/begin-downtime/127.0.0.1/{port}/ceo/testing/10m")
    assert begun.status_code == 200
    assert begun.json()["Details"] == {"Hostname": "127.0.0.1", "Port": port}
    downtimed = (await api.get("/api/downtimed")).json()
    assert [d["Key"]["Port"] for d in downtimed] == [port]
    assert downtimed[0]["IsDowntimed"] is True
    assert downtimed[0]["DowntimeOwner"] == "ceo"
    assert (await api.post(f"/api/end-downtime/127.0.0.1/{port}")).status_code == 200
    assert (await api.get("/api/downtimed")).json() == []
    registered = await api.get(f"/api/register-candidate/127.0.0.1/{port}/prefer")
    assert registered.status_code == 200
    instance = (await api.get(f"/api/instance/127.0.0.1/{port}")).json()
    assert instance["PromotionRule"] == "prefer"
    assert instance["IsCandidate"] is True


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/api/cluster/nosuch", 404, "Unable to determine cluster name. clusterHint=nosuch"),
        ("GET", "/api/instance/127.0.0.1/99999", 400, "port must be 1..65535"),
        ("GET", "/api/instance/127.0.0.1/notaport", 400, "invalid instance key"),
        ("GET", "/api/instance/127.0.0.1/1", 404, "Cannot read instance: 127.0.0.1:1"),
        ("GET", "/api/no-such-route", 404, "no such route: /api/no-such-route"),
        ("DELETE", "/api/clusters", 405, "method DELETE not allowed"),
        ("GET", "/api/begin-downtime/127.0.0.1/1/a/b/10m", 404, "Cannot read instance"),
        ("GET", "/api/register-candidate/127.0.0.1/1/prefer", 404, "Cannot read instance"),
        ("GET", "/api/search", 400, "invalid request"),
        ("GET", "/api/discover/127.0.0.1/3306", 503, "discovery is not reachable"),
    ],
)
async def test_bad_input_is_a_4xx_with_the_envelope(
    api: httpx.AsyncClient, method: str, path: str, status: int, message: str
) -> None:
    answer = await api.request(method, path)
    assert answer.status_code == status
    body = answer.json()
    assert body["Code"] == "ERROR"
    assert message in body["Message"]
    assert body["Details"] is None


async def test_bad_duration_and_rule(api: httpx.AsyncClient, star: Sandbox) -> None:
    port = star.nodes[1].port
    answer = await api.get(f"/api/begin-downtime/127.0.0.1/{port}/ceo/x/soon")
    assert answer.status_code == 400
    assert "invalid duration 'soon'" in answer.json()["Message"]
    # past the bound, or too long to be a number of ours: a 400 that says so, never a 500
    for duration, message in (
        ("36501d", "at most 100 years"),
        ("999999999999d", "at most 100 years"),
        ("9" * 400 + "d", "expected e.g. 30s"),
    ):
        answer = await api.get(f"/api/begin-downtime/127.0.0.1/{port}/ceo/x/{duration}")
        assert answer.status_code == 400, (duration, answer.text)
        assert message in answer.json()["Message"]
    for maintenance_id in ("\u00b2", "9" * 40):  # a superscript two: a digit, not a number
        answer = await api.get(f"/api/end-maintenance/{maintenance_id}")
        assert answer.status_code == 400, (maintenance_id, answer.text)
        assert "invalid maintenance id" in answer.json()["Message"]
    answer = await api.get(f"/api/register-candidate/127.0.0.1/{port}/best")
    assert answer.status_code == 400
    assert "invalid promotion rule 'best'" in answer.json()["Message"]


async def test_authentication(store: Store, star: Sandbox) -> None:
    await store.write_batch(await probe_all(star))
    port = star.nodes[1].port
    mutation = f"/api/begin-downtime/127.0.0.1/{port}/ceo/auth/1m"
    async with client_for(
        store, AuthenticationMethod="token", APITokens={"adm": "admin", "rd": "read"}
    ) as client:
        assert (await client.get("/api/clusters")).status_code == 401
        assert (await client.get(mutation)).status_code == 401
        reader = {"Authorization": "Bearer rd"}
        assert (await client.get("/api/clusters", headers=reader)).status_code == 200
        denied = await client.get(mutation, headers=reader)
        assert denied.status_code == 403
        assert denied.json()["Code"] == "ERROR"
        allowed = await client.get(mutation, headers={"Authorization": "Bearer adm"})
        assert allowed.status_code == 200
    async with client_for(store, AuthenticationMethod="proxy", PowerAuthUsers=["ops"]) as client:
        assert (await client.get(mutation)).status_code == 401
        assert (await client.get(mutation, headers={"X-Forwarded-User": "dev"})).status_code == 403
        assert (await client.get(mutation, headers={"X-Forwarded-User": "ops"})).status_code == 200
    credentials = base64.b64encode(b"ops:pw").decode()
    async with client_for(
        store, AuthenticationMethod="basic", HTTPAuthUser="ops", HTTPAuthPassword="pw"
    ) as client:
        challenge = await client.get(mutation)
        assert challenge.status_code == 401
        assert challenge.headers["WWW-Authenticate"] == 'Basic realm="orchestrator"'
        ok = await client.get(mutation, headers={"Authorization": f"Basic {credentials}"})
        assert ok.status_code == 200


async def test_health_ping_metrics_openapi(api: httpx.AsyncClient) -> None:
    health = (await api.get("/api/health")).json()
    assert health["Code"] == "OK"
    assert health["Details"]["Healthy"] is True
    assert (await api.get("/api/_ping")).text == "OK"
    metrics = (await api.get("/metrics")).text
    assert (
        'orchestrator_api_requests_total{method="GET",route="/api/_ping",status="200"} 1.0'
        in metrics
    )
    assert 'orchestrator_api_request_duration_seconds_count{route="/api/health"}' in metrics
    spec = (await api.get("/openapi.json")).json()
    assert "/api/cluster/{hint}" in spec["paths"]


async def test_replication_analysis_and_problems_of_a_dead_master(
    sandbox_factory: Callable[..., Sandbox], store: Store
) -> None:
    sandbox = sandbox_factory(nodes=3)
    healthy = await probe_all(sandbox)
    await store.write_batch(healthy)
    async with client_for(store) as api:
        calm = (await api.get("/api/replication-analysis")).json()
        assert calm["Code"] == "OK"
        assert [e["Analysis"] for e in calm["Details"]] == []
        assert (await api.get("/api/problems")).json() is None
        sandbox.kill(0)
        await asyncio.sleep(1.5)  # the replicas' IO threads notice at once (connection reset)
        await store.write_batch(await probe_all(sandbox))
        answer = (await api.get("/api/replication-analysis")).json()
        assert answer["Message"] == "Analysis"
        codes = {e["AnalyzedInstanceKey"]["Port"]: e["Analysis"] for e in answer["Details"]}
        assert codes[sandbox.master.port] == "DeadMaster"
        # the same fields as orchestrator's (StructureAnalysis is null when empty, as in Go)
        sampled = load_sample("replication-analysis.json")["Details"][0]
        assert list(answer["Details"][0]) == list(sampled)
        master = sandbox.master.key
        # the replicas, as orchestrator says, are first-tier replicas failing to connect
        assert {codes[n.port] for n in sandbox.nodes[1:]} == {
            "FirstTierReplicaFailingToConnectToMaster"
        }
        of_cluster = (await api.get(f"/api/replication-analysis/{master}")).json()
        assert {e["AnalyzedInstanceKey"]["Port"]: e["Analysis"] for e in of_cluster["Details"]} == (
            codes
        )
        of_instance = await api.get(
            f"/api/replication-analysis/instance/127.0.0.1/{sandbox.master.port}"
        )
        assert [e["Analysis"] for e in of_instance.json()["Details"]] == ["DeadMaster"]
        problems = (await api.get("/api/problems")).json()
        assert {p["Key"]["Port"] for p in problems} == {n.port for n in sandbox.nodes}
        # a downtimed instance is analysed still, but left out of problems
        port = sandbox.nodes[2].port
        assert (await api.get(f"/api/begin-downtime/127.0.0.1/{port}/ops/x/5m")).status_code == 200
        problems = (await api.get(f"/api/problems/{master}")).json()
        assert port not in {p["Key"]["Port"] for p in problems}


async def test_audit_and_recovery_history(
    api: httpx.AsyncClient, store: Store, star: Sandbox
) -> None:
    port = star.nodes[1].port
    await api.get(f"/api/begin-downtime/127.0.0.1/{port}/ceo/audited/1m")
    entries = (await api.get("/api/audit")).json()
    assert entries[0]["AuditType"] == "begin-downtime"
    assert entries[0]["AuditInstanceKey"] == {"Hostname": "127.0.0.1", "Port": port}
    assert "ceo" in entries[0]["Message"]
    assert (await api.get(f"/api/audit/instance/127.0.0.1/{port}")).json()[0]["AuditId"] == (
        entries[0]["AuditId"]
    )
    assert (await api.get("/api/audit/1")).status_code == 200
    assert (await api.get("/api/audit/x")).status_code == 400
    sample = load_sample("audit-recovery.json")[0]
    now = datetime.now(UTC)
    recovery_id = await store.record_recovery(
        RecoveryRecord(
            uid="r-1",
            key=InstanceKey.parse(star.master.key),
            cluster=star.master.key,
            cluster_alias="sb",
            analysis_code="DeadMaster",
            started_at=now,
            ended_at=now,
            is_active=False,
            is_successful=True,
            successor_key=InstanceKey.parse(star.nodes[1].key),
            recovery_type="MasterRecoveryGTID",
            type="MasterRecovery",
            analysis=json.dumps(sample["AnalysisEntry"]),
        )
    )
    recoveries = (await api.get("/api/audit-recovery")).json()
    assert_same_shape(recoveries[:1], [sample])
    assert recoveries[0]["Id"] == recovery_id
    assert recoveries[0]["SuccessorKey"] == {"Hostname": "127.0.0.1", "Port": star.nodes[1].port}
    for path in (
        f"/api/audit-recovery/id/{recovery_id}",
        "/api/audit-recovery/uid/r-1",
        f"/api/audit-recovery/cluster/{star.master.key}",
        "/api/audit-recovery/alias/sb",
        "/api/audit-recovery/0",
    ):
        assert [r["UID"] for r in (await api.get(path)).json()] == ["r-1"], path
    assert (await api.get("/api/audit-recovery?unacknowledged=true")).json()[0]["UID"] == "r-1"
    detection_id = await store.record_failure_detection(
        FailureDetection(
            key=InstanceKey.parse(star.master.key),
            cluster=star.master.key,
            cluster_alias="sb",
            analysis_code="DeadMaster",
            detected_at=now,
            analysis=json.dumps(sample["AnalysisEntry"]),
        )
    )
    detections = (await api.get("/api/audit-failure-detection")).json()
    assert_same_shape(detections[:1], load_sample("audit-failure-detection.json")[:1])
    assert (await api.get(f"/api/audit-failure-detection/id/{detection_id}")).status_code == 200
    assert (await api.get("/api/audit-failure-detection/id/999999")).status_code == 404
    assert len((await api.get("/api/audit-failure-detection/alias/sb")).json()) == 1


async def test_operations_need_the_bus(api: httpx.AsyncClient, star: Sandbox) -> None:
    a, b = star.nodes[2].port, star.nodes[1].port
    answer = await api.get(f"/api/relocate/127.0.0.1/{a}/127.0.0.1/{b}")
    assert answer.status_code == 503
    assert "bus is not reachable" in answer.json()["Message"]
    same = await api.get(f"/api/relocate/127.0.0.1/{a}/127.0.0.1/{a}")
    assert same.status_code == 400
    unknown = await api.get(f"/api/relocate/127.0.0.1/{a}/127.0.0.1/1")
    assert unknown.status_code == 404


async def test_health_and_leader_check_follow_the_coordinator_reports(
    store: Store, nats_server: Any
) -> None:
    subjects = Subjects()
    raw = await nats.connect(nats_server.url)
    watch = LeaderWatch(subjects)
    await watch.connect([nats_server.url])
    running = asyncio.create_task(watch.run())
    try:
        await raw.jetstream().add_stream(events_stream_config(subjects, retention_days=1))
        context = ApiContext(settings=Settings(), store=store, leader=watch)
        transport = httpx.ASGITransport(app=create_app(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
            answer = await api.get("/api/leader-check")
            assert answer.status_code == 503
            assert "no report from the coordinator yet" in answer.json()["Message"]
            now = datetime.now(UTC)
            identity = LeaderIdentity(id="w-1", host="db-host", pid=42, started_at=now)
            for event in (
                LeaderEvent(leader=None, observed_at=now),
                LeaderEvent(leader=identity, fencing_token=17, since=now, observed_at=now),
            ):
                await raw.jetstream().publish(subjects.leader, event.model_dump_json().encode())
            for _ in range(750):  # up to 15 s: the machine may be busy
                if watch.latest is not None and watch.latest.leader is not None:
                    break
                await asyncio.sleep(0.02)
            assert (await api.get("/api/leader-check")).json() == "OK"
            health = (await api.get("/api/health")).json()["Details"]
            assert health["RaftLeader"] == "w-1@db-host"
            assert health["ActiveNode"]["Token"] == "17"
            # a watcher that starts later learns the current leader from the stream
            late = LeaderWatch(subjects)
            await late.connect([nats_server.url])
            late_run = asyncio.create_task(late.run())
            try:
                for _ in range(750):  # up to 15 s: the machine may be busy
                    if late.latest is not None:
                        break
                    await asyncio.sleep(0.02)
                assert late.latest is not None and late.latest.fencing_token == 17
            finally:
                late_run.cancel()
                await late.close()
            await raw.jetstream().publish(
                subjects.leader,
                LeaderEvent(leader=None, observed_at=datetime.now(UTC)).model_dump_json().encode(),
            )
            for _ in range(750):  # up to 15 s: the machine may be busy
                if watch.latest is not None and watch.latest.leader is None:
                    break
                await asyncio.sleep(0.02)
            assert (await api.get("/api/leader-check")).status_code == 503
    finally:
        running.cancel()
        await watch.close()
        await raw.close()


async def test_operator_changes_reach_etcd_for_the_recovery_workers(
    store: Store, etcd_server: Any
) -> None:
    await store.write_batch([snapshot("db1:3306")])
    reachable = EtcdClient(EtcdOptions(endpoints=(etcd_server.endpoint,)))
    unreachable = EtcdClient(
        EtcdOptions(endpoints=(f"http://127.0.0.1:{free_port()}",), request_timeout=0.3)
    )
    try:
        for etcd, expected in ((reachable, 200), (unreachable, 503)):
            context = ApiContext(
                settings=Settings(), store=store, operator_state=OperatorState(etcd)
            )
            transport = httpx.ASGITransport(app=create_app(context))
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as api:
                answer = await api.post("/api/begin-downtime/db1/3306/ops/disk/1h")
                assert answer.status_code == expected, answer.text
                answer = await api.post("/api/register-candidate/db1/3306/prefer")
                assert answer.status_code == expected, answer.text
        now = datetime.now(UTC)
        state = OperatorState(reachable)
        key = InstanceKey.parse("db1:3306")
        assert key in await state.downtimed(now)
        assert (await state.candidates(now))[key] == PromotionRule.PREFER
        # refused by etcd: the store has it, the answer says the workers were not told
        assert "could not be told" in answer.json()["Message"]
    finally:
        await reachable.close()
        await unreachable.close()


async def test_health_keeps_the_store_error_out_of_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """/api/health answers anyone: it says the store fails, the log says why."""
    store = await open_store("sqlite", sqlite_path=tmp_path / "gone.sqlite3")
    await store.close()  # every statement now fails
    caplog.set_level(logging.WARNING, logger="orchestrator_api.app")
    async with client_for(store) as client:
        for _ in range(3):
            answer = await client.get("/api/health")
            assert answer.status_code == 200
            body = answer.json()
            assert body["Code"] == "ERROR"
            assert body["Message"] == (
                "Application node is unhealthy: its store does not answer (see the API's log)"
            )
        status = await client.get("/api/status")
        assert status.status_code == 500 and status.json()["Message"] == body["Message"]
    logged = [r for r in caplog.records if "the store does not answer" in r.getMessage()]
    assert len(logged) == 1  # once per distinct error, not once per probe
