"""The moves of many replicas (issue 6) through the routes and the CLI: orchestrator's envelope
and legacy route names, orchestrator-client's output, over a real nats-server answered by the
real :class:`CommandResponder` wired with the handlers, on a real 4-node MariaDB GTID sandbox;
and what discovery and the topology API show for a co-master pair.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import nats
import pytest
import uvicorn

from orchestrator_api.cli.client import run_client
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_api.http.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.sandbox import Sandbox
from orchestrator_api.store import Store, open_store
from orchestrator_recovery.commands import CommandResponder, Handler, Leadership
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import Settings
from tests.harness.ports import free_port
from tests.integration.test_api import probe_all
from tests.integration.test_moves import (
    Recorder,
    key_json,
    link,
    path,
    port,
    restore_star,
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
    undo_co_master,
)
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox(module_sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    return module_sandbox_factory(nodes=4)


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    undo_co_master(sandbox)
    restore_star(sandbox)
    await settled(sandbox, star(sandbox))


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
    sandbox = clean
    store: Store = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    await store_topology(store, sandbox)
    recorder = Recorder()
    nc = await nats.connect(nats_server.url)
    operations: dict[str, Handler] = handlers(recorder)
    responder = CommandResponder(
        nc,
        Subjects(),
        cast(Any, None),  # the recovery worker and control: not used by these operations
        cast(Any, None),
        Leadership(lambda: True, recorder.guard, lambda: 1),
        operations=operations,
    )
    answering = asyncio.create_task(responder.run())
    await asyncio.sleep(0.1)
    await nc.flush()
    requester = NatsRequester(Subjects())
    await requester.connect([nats_server.url])
    context = ApiContext(settings=Settings(), store=store, discovery=requester)
    transport = httpx.ASGITransport(app=create_app(context))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Api(client, context, store, recorder, sandbox)
    finally:
        answering.cancel()
        with suppress(asyncio.CancelledError):
            await answering
        await requester.close()
        await nc.close()
        await store.close()


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
    server_port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(api.context), host="127.0.0.1", port=server_port, log_level="warning"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)

        async def cli(*args: str) -> tuple[int, str, str]:
            out = io.StringIO()
            argv = [*args, "--api", f"http://127.0.0.1:{server_port}"]
            code = await asyncio.to_thread(run_client, argv, out=out, environ={})
            return code, out.getvalue(), capsys.readouterr().err

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
    finally:
        server.should_exit = True
        await serving
