"""Issue 10's routes on real snapshots of a real 4-node MariaDB sandbox, in a real store:
every route with and without a trailing slash, and the routes orchestrator's scripts use that
were missing (bulk reads, OSC replicas, KV pairs, begin-downtime's default, search by path,
snapshot-topologies, the analysis changelog); then the raft routes answered from a real etcd
election as a real coordinator reports it over a real nats-server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.leadership import LeaderWatch
from orchestrator_api.store import Store, open_store
from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from tests import harness
from tests.harness.ports import free_port
from tests.integration.api_support import run_cli, serve
from tests.integration.coordinator_support import STEADY, CoordinatorProcess, DrillWorker
from tests.integration.test_api import probe_all
from tests.integration.test_local_stack import free_base_port, orchestrator
from tests.integration.test_store import FLEET, k

pytestmark = pytest.mark.integration


def client_for(context: ApiContext) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(context))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


# --- every route, with and without a trailing slash ------------------------------------------


def _filled(template: str) -> str:
    """A route template with every parameter filled: an unknown instance or cluster."""
    values = {"host": "nowhere", "port": "3306", "below_port": "3306", "candidate_port": "3306"}
    return re.sub(
        r"\{([a-z_]+)\}",
        lambda m: values.get(m.group(1), "1" if m.group(1).endswith("id") else "nowhere"),
        template,
    )


async def test_every_route_answers_the_same_with_a_trailing_slash(tmp_path: Path) -> None:
    store = await open_store("sqlite", sqlite_path=tmp_path / "s.sqlite3")
    try:
        await store.write_batch(FLEET)
        context = ApiContext(settings=Settings(), store=store)
        async with client_for(context) as api:
            schema = (await api.get("/openapi.json")).json()
            checked = 0
            for template, operations in sorted(schema["paths"].items()):
                path = _filled(template)
                for method in operations:
                    plain = await api.request(method.upper(), path)
                    slashed = await api.request(method.upper(), path + "/")
                    assert not 300 <= slashed.status_code < 400, (method, path)
                    assert slashed.status_code == plain.status_code, (method, path, slashed.text)
                    kind = slashed.headers.get("content-type")
                    assert kind == plain.headers.get("content-type"), (method, path)
                    if kind == "application/json":
                        assert type(slashed.json()) is type(plain.json()), (method, path)
                    checked += 1
            assert checked > 250  # every route of the API, GET and POST
    finally:
        await store.close()


# --- the missing routes on the sandbox --------------------------------------------------------


@pytest.fixture(scope="module")
def star(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return module_sandbox_factory(nodes=4)


@pytest.fixture
async def sandbox_store(star: Sandbox, store: Store) -> Store:
    await store.write_batch(await probe_all(star))
    return store


def keys_of(star: Sandbox, *indexes: int) -> list[dict[str, Any]]:
    return [{"Hostname": "127.0.0.1", "Port": star.node(i).port} for i in indexes]


async def test_bulk_reads_need_the_admin_role(star: Sandbox, sandbox_store: Store) -> None:
    settings = Settings(AuthenticationMethod="multi", HTTPAuthUser="ops", HTTPAuthPassword="pw")
    async with client_for(ApiContext(settings=settings, store=sandbox_store)) as api:
        admin = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
        reader = {"Authorization": "Basic " + base64.b64encode(b"readonly:x").decode()}
        master = star.node(0)
        registered = await api.post(
            f"/api/register-candidate/127.0.0.1/{star.node(2).port}/prefer", headers=admin
        )
        assert registered.status_code == 200
        instances = await api.get("/api/bulk-instances", headers=admin)
        assert instances.json() == keys_of(star, 0, 1, 2, 3)
        rules = (await api.get("/api/bulk-promotion-rules/", headers=admin)).json()
        assert [(r["Hostname"], r["Port"], r["PromotionRule"]) for r in rules] == [
            ("127.0.0.1", star.node(2).port, "prefer")
        ]
        expiry = datetime.strptime(rules[0]["PromotionRuleExpiry"], "%Y-%m-%d %H:%M:%S")
        since = datetime.strptime(rules[0]["LastSuggestedString"], "%Y-%m-%d %H:%M:%S")
        assert expiry - since == timedelta(minutes=60)
        for path in ("/api/bulk-instances", "/api/bulk-promotion-rules"):
            assert (await api.get(path, headers=reader)).status_code == 403
        # a read route stays open to the read-only user
        assert (await api.get(f"/api/search/{master.port}", headers=reader)).status_code == 200


async def test_osc_replicas_search_and_default_downtime(
    star: Sandbox, sandbox_store: Store
) -> None:
    one = f"127.0.0.1:{star.node(1).port}"
    ignore = Settings(OSCIgnoreHostnameFilters=[f":{star.node(1).port}$"])
    for settings, expected in ((Settings(), (1, 2)), (ignore, (2, 3))):
        async with client_for(ApiContext(settings=settings, store=sandbox_store)) as api:
            for route in ("cluster-osc-replicas", "cluster-osc-slaves"):
                answer = (await api.get(f"/api/{route}/{star.master.key}")).json()
                assert [i["Key"] for i in answer] == keys_of(star, *expected), route
                assert "ReadOnly" in answer[0]  # the instance JSON
    async with client_for(ApiContext(settings=Settings(), store=sandbox_store)) as api:
        assert (await api.get("/api/cluster-osc-replicas/nosuch")).status_code == 404
        by_path = (await api.get(f"/api/search/{star.node(1).port}")).json()
        by_query = (await api.get("/api/search", params={"s": str(star.node(1).port)})).json()
        assert [i["Key"] for i in by_path] == [i["Key"] for i in by_query] == keys_of(star, 1)
    minutes = Settings(MaintenanceExpireMinutes=7)
    async with client_for(ApiContext(settings=minutes, store=sandbox_store)) as api:
        begun = await api.get(f"/api/begin-downtime/127.0.0.1/{star.node(1).port}/ops/disk/")
        assert begun.json()["Code"] == "OK", begun.text
        assert begun.json()["Details"] == keys_of(star, 1)[0]
        (downtime,) = await sandbox_store.downtimes(now=datetime.now(UTC))
        assert downtime.key == InstanceKey.parse(one)
        assert downtime.ends_at - downtime.begins_at == timedelta(minutes=7)
        assert (downtime.owner, downtime.reason) == ("ops", "disk")
        downtimed = (await api.get("/api/downtimed/")).json()
        assert [i["Key"] for i in downtimed] == keys_of(star, 1)
        unknown = await api.get("/api/begin-downtime/127.0.0.1/1/ops/disk")
        assert unknown.status_code == 404


async def test_kv_pairs_of_the_writable_masters(star: Sandbox, sandbox_store: Store) -> None:
    settings = Settings(KVClusterMasterPrefix="db/writer/")
    async with client_for(ApiContext(settings=settings, store=sandbox_store)) as api:
        await api.post(f"/api/set-cluster-alias/{star.master.key}", params={"alias": "bars"})
        expected = [
            {"Key": "db/writer/bars", "Value": star.master.key},
            {"Key": "db/writer/bars/hostname", "Value": "127.0.0.1"},
            {"Key": "db/writer/bars/port", "Value": str(star.master.port)},
            {"Key": "db/writer/bars/ipv4", "Value": "127.0.0.1"},
            {"Key": "db/writer/bars/ipv6", "Value": ""},
        ]
        for path in ("submit-masters-to-kv-stores", "submit-masters-to-kv-stores/bars"):
            answer = (await api.get(f"/api/{path}")).json()
            assert answer["Code"] == "OK"
            assert answer["Details"] == expected, path
            assert "no key-value store is wired" in answer["Message"]
        assert (await api.get("/api/submit-masters-to-kv-stores/nosuch")).status_code == 404


async def test_snapshot_topologies_and_the_changelog(star: Sandbox, sandbox_store: Store) -> None:
    async with client_for(ApiContext(settings=Settings(), store=sandbox_store)) as api:
        taken = (await api.post("/api/snapshot-topologies")).json()
        assert (taken["Code"], taken["Message"]) == ("OK", "Topology Snapshot completed")
        assert re.fullmatch(r"Took [0-9.]+(ns|\u00b5s|ms|s)", taken["Details"]), taken
        history = await sandbox_store.topology_history(cluster=star.master.key)
        assert [(str(e.key), e.master_key) for e in history] == [
            (node.key, None if node.index == 0 else k(star.master.key)) for node in star.nodes
        ]
        assert all("MariaDB" in e.version for e in history)
        audit = (await api.get("/api/audit")).json()
        assert audit[0]["AuditType"] == "snapshot-topologies"
        assert audit[0]["Message"] == "4 instances"

        assert (await api.get("/api/replication-analysis-changelog")).json() == []
        one, two = k(star.node(1).key), k(star.node(2).key)
        now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
        await sandbox_store.record_analysis(star.master.key, {two: "LockedSemiSyncMaster"}, at=now)
        await sandbox_store.record_analysis(
            star.master.key, {one: "DeadMaster"}, at=now + timedelta(seconds=1)
        )
        answer = (await api.get("/api/replication-analysis-changelog/")).json()
        assert answer == [
            {
                "AnalyzedInstanceKey": keys_of(star, 1)[0],
                "Changelog": ["2026-01-05 12:00:01;DeadMaster,"],
            },
            {
                "AnalyzedInstanceKey": keys_of(star, 2)[0],
                "Changelog": [
                    "2026-01-05 12:00:00;LockedSemiSyncMaster,",
                    "2026-01-05 12:00:01;NoProblem,",
                ],
            },
        ]


# --- raft routes from a real election ---------------------------------------------------------


async def _wait(check: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {timeout:g} s"
        await asyncio.sleep(0.1)


async def test_raft_routes_follow_the_etcd_election(
    etcd_server: harness.EtcdLike,
    nats_server: harness.NatsLike,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    prefix = f"/compat-{uuid.uuid4().hex[:8]}"
    timing = {
        "EtcdLeaseTTLSeconds": STEADY.ttl,
        "EtcdKeepAliveIntervalSeconds": STEADY.keepalive,
        "EtcdRequestTimeoutSeconds": STEADY.request_timeout,
        "MySQLConnectTimeoutSeconds": 1,
    }
    coordinator = CoordinatorProcess(
        {
            "EtcdEndpoints": [etcd_server.endpoint],
            "NATSServers": [nats_server.url],
            "EtcdKeyPrefix": prefix,
            **timing,
        }
    )
    worker = DrillWorker(
        worker_id="w-compat",
        endpoints=[etcd_server.endpoint],
        records=tmp_path / "records.jsonl",
        prefix=prefix,
    )
    store = await open_store("sqlite", sqlite_path=tmp_path / "s.sqlite3")
    watch = LeaderWatch(Subjects())
    watching: asyncio.Task[None] | None = None
    try:
        coordinator.start()
        await watch.connect([nats_server.url])
        watching = asyncio.create_task(watch.run())
        context = ApiContext(settings=Settings(), store=store, leader=watch)
        async with client_for(context) as api, serve(context) as url:

            async def says(word: str) -> bool:
                return (await api.get("/api/raft-state")).json() == word

            await _wait(lambda: says("Candidate"), "told that none leads")
            assert (await api.get("/api/raft-health/")).status_code == 503
            assert (await api.get("/api/leader-check/429")).status_code == 429
            code, out = await asyncio.to_thread(run_cli, url, "-c", "raft-leader-hostname")
            assert (code, out) == (1, "")
            assert "Cannot determine raft state" in capsys.readouterr().err

            worker.start()
            await _wait(lambda: says("Leader"), "told that the worker leads")
            leader = f"w-compat@{socket.gethostname()}"
            assert (await api.get("/api/raft-leader")).json() == leader
            assert (await api.get("/api/raft-health")).json() == "healthy"
            assert (await api.get("/api/leader-check/429")).json() == "OK"
            assert (await api.get("/api/routed-leader-check")).json() == "OK"
            for command, printed in (
                ("raft-leader", leader),
                ("raft-health", "healthy"),
                ("raft-leader-hostname", socket.gethostname()),
            ):
                answer = await asyncio.to_thread(run_cli, url, "-c", command)
                assert answer == (0, f"{printed}\n"), command

            worker.stop()  # resigns: the coordinator reports that none leads
            await _wait(lambda: says("Candidate"), "told that the worker resigned")
            assert (await api.get("/api/raft-leader")).status_code == 503
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        await watch.close()
        worker.close()
        coordinator.close()
        await store.close()


# --- URLPrefix under `orchestrator up` --------------------------------------------------------


def test_up_waits_for_and_follows_the_api_under_its_url_prefix(tmp_path: Path) -> None:
    base = free_base_port(3)
    port = free_port()
    config = tmp_path / "orchestrator.conf.json"
    config.write_text(
        json.dumps({"ListenAddress": f"127.0.0.1:{port}", "URLPrefix": "orchestrator/"})
    )
    result = orchestrator(
        "up",
        "--config",
        str(config),
        "--sandbox",
        str(tmp_path / "sb"),
        "--nodes",
        "3",
        "--base-port",
        str(base),
        "--once",
        "--timeout",
        "40",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    url = f"http://127.0.0.1:{port}/orchestrator"
    assert any(line.startswith(f"orchestrator-topology-api on {url} ") for line in lines), lines
    assert f"try: uv run orchestrator -c clusters --api {url}" in lines
    tree = lines[len(lines) - 1 - lines[::-1].index(f"cluster 127.0.0.1:{base}") + 1 :]
    assert [line.split()[-2] for line in tree[1:3]] == [
        f"127.0.0.1:{base + 1}",
        f"127.0.0.1:{base + 2}",
    ]
    assert "Traceback" not in result.stderr
