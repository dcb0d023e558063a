"""The moves of many replicas (issue 6) through the routes and the CLI: orchestrator's envelope
and legacy route names, orchestrator-client's output, over a real nats-server answered by the
real :class:`CommandResponder` wired with the handlers, on a real 4-node MariaDB GTID sandbox;
and what discovery and the topology API show for a co-master pair.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import Store
from orchestrator_cli.sandbox import Sandbox
from orchestrator_recovery.ports import Handler
from tests.integration.api_support import Recorder, link, path, responder_api, serve_cli
from tests.integration.test_api import probe_all
from tests.integration.test_moves import (
    key_json,
    port,
    same_data,
    settled,
    star,
    topology,
)
from tests.integration.test_moves_many import (
    below,
    handlers,
    keys_of,
    only,
    put_back,
    undo_co_master,
)
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    await put_back(sandbox)


# --- the routes and the CLI, over NATS, answered by the real responder -----------------------


@dataclass
class Api:
    client: httpx.AsyncClient
    context: ApiContext
    store: Store
    recorder: Recorder
    sandbox: Sandbox


async def store_topology(store: Store, sandbox: Sandbox) -> None:
    """The store's snapshots as the servers are linked now (what discovery would write)."""
    snapshots = []
    for index in range(4):
        now = link(sandbox, index)
        master = None if now is None else f"127.0.0.1:{now[0]}"
        snapshots.append(snapshot(sandbox.node(index).key, master))
    await store.write_batch(tuple(snapshots))


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    recorder = Recorder()
    operations: dict[str, Handler] = handlers(recorder)
    async with responder_api(nats_server.url, tmp_path, recorder.guard, operations) as harness:
        await store_topology(harness.store, clean)
        yield Api(harness.client, harness.context, harness.store, recorder, clean)


async def test_routes_answer_orchestrators_envelope(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    zero, one = sandbox.node(0).key, sandbox.node(1).key
    answer = await client.post(
        f"/api/relocate-slaves/{path(sandbox, 0)}/{path(sandbox, 1)}",
        params={"pattern": only(sandbox, 2, 3)},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["Code"], body["Message"]) == ("OK", f"Relocated 2 replicas of {zero} below {one}")
    assert keys_of(body["Details"]) == [key_json(sandbox, 2), key_json(sandbox, 3)]
    assert "ReadOnly" in body["Details"][0]  # the instance JSON
    assert body["Details"][0]["MasterKey"] == key_json(sandbox, 1)

    up = (await client.post(f"/api/move-up-slaves/{path(sandbox, 1)}")).json()
    assert up["Message"] == f"Moved up 2 replicas of {one}"
    gtid = await client.post(f"/api/move-slaves-gtid/{path(sandbox, 0)}/{path(sandbox, 1)}")
    assert gtid.json()["Details"] == key_json(sandbox, 1)
    back = (await client.get(f"/api/repoint-replicas/{path(sandbox, 1)}")).json()
    assert back["Message"] == f"Repointed 2 replicas of {one}"
    await client.post(f"/api/move-replicas-gtid/{path(sandbox, 1)}/{path(sandbox, 0)}")
    assert topology(sandbox) == star(sandbox)

    refused = await client.post(f"/api/enslave-master/{path(sandbox, 1)}")
    assert refused.status_code == 409
    assert "is not a replica: take-master swaps" in refused.json()["Message"]
    assert (await client.post("/api/take-siblings/127.0.0.1/x")).status_code == 400
    assert (await client.post("/api/regroup-slaves/nowhere/3306")).status_code == 404

    made = await client.post(f"/api/make-co-master/{path(sandbox, 1)}")
    assert made.status_code == 200, made.text
    assert made.json()["Details"]["Key"] == key_json(sandbox, 1)
    again = await client.post(f"/api/make-co-master/{path(sandbox, 1)}")
    assert again.status_code == 409
    assert f"{one} is already co master" in again.json()["Message"]
    # what discovery stores for the pair: both are co-masters, the cluster still builds
    await api.store.write_batch(tuple(await probe_all(sandbox)))
    for index in (0, 1):
        instance = (await client.get(f"/api/instance/{path(sandbox, index)}")).json()
        assert instance["IsCoMaster"] is True
    cluster = await client.get(f"/api/cluster/{one}")
    assert cluster.status_code == 200, cluster.text
    assert {tuple(i["Key"].values()) for i in cluster.json()} == {
        ("127.0.0.1", port(sandbox, i)) for i in range(4)
    }
    assert (await client.get(f"/api/topology/{one}")).status_code == 200
    analysis = (await client.get("/api/replication-analysis")).json()
    assert analysis["Details"] == []  # a healthy co-master pair is no problem
    undo_co_master(sandbox)
    assert {e.user for e in api.recorder.audits} == {"anonymous"}


async def test_cli_prints_what_orchestrator_client_prints(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = api.sandbox
    async with serve_cli(api.context, capsys) as cli:
        zero, one, two, three = (sandbox.node(i).key for i in range(4))
        relocated = await cli("-c", "relocate-replicas", "-i", zero, "-d", one)
        assert relocated == (0, f"{two}\n{three}\n", "")
        assert await cli("-c", "move-up-replicas", "-i", one) == (0, f"{two}\n{three}\n", "")
        pattern = only(sandbox, 3)
        gtid = await cli("-c", "move-slaves-gtid", "-i", zero, "-d", one, "--pattern", pattern)
        assert gtid == (0, f"{one}\n", "")  # Details: the destination
        assert link(sandbox, 3) == below(sandbox, 1)
        assert await cli("-c", "repoint-replicas", "-i", one) == (0, f"{three}\n", "")
        # 2 takes its sibling 1; 1 takes its master 2 back: 0 -> 1 -> (2, 3)
        assert await cli("-c", "enslave-siblings", "-i", two) == (0, f"{two}<{zero}\n", "")
        assert link(sandbox, 1) == below(sandbox, 2)
        assert await cli("-c", "enslave-master", "-i", one) == (0, f"{one}<{zero}\n", "")
        assert topology(sandbox) == [None, below(sandbox, 0), below(sandbox, 1), below(sandbox, 1)]
        first, second = sorted((2, 3), key=lambda i: sandbox.node(i).key)
        code, out, _ = await cli("-c", "regroup-replicas", "-i", one)
        assert (code, out) == (0, f"{sandbox.node(first).key} lost: 0, moved: 1\n")
        assert link(sandbox, second) == below(sandbox, first)
        await same_data(sandbox, second, "after the CLI")
        code, out, err = await cli("-c", "take-master", "-i", one)
        assert (code, out) == (1, "")
        assert "is not a replica: take-master swaps" in err
        assert (await cli("-c", "relocate-replicas", "-i", one))[0] == 2  # no -d
        assert (await cli("-c", "relocate-replicas", "-i", sandbox.node(first).key, "-d", zero))[
            0
        ] == 0
        assert (await cli("-c", "relocate-replicas", "-i", one, "-d", zero))[0] == 0
        assert topology(sandbox) == star(sandbox)
        assert await cli("-c", "make-co-master", "-i", one) == (0, f"{one}<{zero}\n", "")
        code, _, err = await cli("-c", "make-co-master", "-i", one)
        assert code == 1
        assert "already co master" in err
        undo_co_master(sandbox)
