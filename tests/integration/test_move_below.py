"""``move-below`` (issue 10): a replica moved below its sibling with GTID, through the worker's
handler, the API and ``orchestrator -c`` (with ``--debug`` and ``--stack``), on a real 4-node
MariaDB GTID sandbox (node 0 the master of 1, 2, 3), over a real nats-server answered by the
real :class:`CommandResponder`.

Each move is checked on the servers (the moved replica replicates from its sibling with GTID
and has every row: ``CHECKSUM TABLE`` matches the master's after a write); each refusal (onto
itself, not a sibling, a replica without GTID) is checked to change nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator_api.app import create_app
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import open_store
from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import OperationRefused
from tests.integration.api_support import Recorder, link, path, replica_row, serve_cli, star_api
from tests.integration.api_support import SandboxApi as Api
from tests.integration.test_moves import (
    MASTER,
    handlers,
    key_json,
    port,
    request,
    restore_star,
    same_data,
    settled,
    star,
    topology,
)
from tests.integration.test_store import snapshot
from tests.unit.test_wire_samples import load_sample

pytestmark = pytest.mark.integration


def below(sandbox: Sandbox, index: int) -> tuple[int, str, str, str]:
    return (port(sandbox, index), "Yes", "Yes", "Slave_Pos")


def to_file_pos(sandbox: Sandbox, index: int) -> None:
    """Node ``index`` replicates from its master by file:pos (``master_use_gtid=no``) from
    exactly where it was."""
    sandbox.execute(index, "STOP SLAVE")
    row = replica_row(sandbox, index)
    sandbox.execute(
        index,
        f"CHANGE MASTER TO master_use_gtid=no, master_log_file='{row['Relay_Master_Log_File']}', "
        f"master_log_pos={int(row['Exec_Master_Log_Pos'])}",
    )
    sandbox.execute(index, "START SLAVE")


@pytest.fixture
async def clean(sandbox: Sandbox) -> AsyncIterator[Sandbox]:
    await settled(sandbox, star(sandbox))
    yield sandbox
    restore_star(sandbox)
    await settled(sandbox, star(sandbox))


async def test_a_replica_moves_below_its_sibling_and_nothing_else(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    one, two = sandbox.node(1).key, sandbox.node(2).key
    moved = await ops["move-below"](request("move-below", sandbox, 1, below=2))
    assert moved.ok
    assert moved.message == f"Instance {one} moved below {two}"
    recorded = load_sample("move-below.json")["Message"].split()  # orchestrator's words
    words = moved.message.split()
    assert (words[0], words[2], words[3]) == (recorded[0], recorded[2], recorded[3])
    assert moved.details["MasterKey"] == key_json(sandbox, 2)
    assert moved.details["UsingMariaDBGTID"] is True  # orchestrator's own move fell to file:pos
    assert link(sandbox, 1) == below(sandbox, 2)
    await same_data(sandbox, 1, "after move-below")
    assert recorder.guards == 3  # STOP, CHANGE MASTER, START: the GTID move's own steps
    assert [(e.type, e.ok, e.user) for e in recorder.audits] == [("move-below", True, "alice")]

    # refused, each changing nothing: onto itself, not siblings (either way), the master
    now = topology(sandbox)
    for index, sibling, reason in (
        (2, 2, "below itself"),
        (3, 1, "instances are not siblings"),  # 1 replicates from 2, 3 from 0
        (1, 3, "instances are not siblings"),
        (MASTER, 3, "instances are not siblings: .* replicates from nobody"),
    ):
        with pytest.raises(OperationRefused, match=reason):
            await ops["move-below"](request("move-below", sandbox, index, below=sibling))
    assert topology(sandbox) == now
    assert recorder.guards == 3
    assert len(recorder.audits) == 1


async def test_without_gtid_it_is_refused_and_says_what_to_do(clean: Sandbox) -> None:
    sandbox, recorder = clean, Recorder()
    ops = handlers(recorder)
    to_file_pos(sandbox, 3)
    await settled(sandbox, [*star(sandbox)[:3], (port(sandbox, MASTER), "Yes", "Yes", "No")])
    now = topology(sandbox)
    three = sandbox.node(3).key
    for index, sibling in ((3, 1), (1, 3)):  # the replica without GTID, or its sibling
        with pytest.raises(OperationRefused) as refused:
            await ops["move-below"](request("move-below", sandbox, index, below=sibling))
        text = str(refused.value)
        assert f"{three} does not replicate with GTID (Using_Gtid=No)" in text
        assert f"orchestrator -c enable-gtid -i {three}" in text
    assert topology(sandbox) == now
    assert (recorder.guards, recorder.audits) == (0, [])
    await same_data(sandbox, 3, "still replicating by file:pos")


# --- the route and the CLI, over NATS, answered by the real responder ------------------------


@pytest.fixture
async def api(clean: Sandbox, nats_server: Any, tmp_path: Path) -> AsyncIterator[Api]:
    recorder = Recorder()
    async with star_api(nats_server.url, tmp_path, clean, recorder, handlers(recorder)) as api:
        yield api


async def test_the_route_answers_orchestrators_envelope(api: Api) -> None:
    client, sandbox = api.client, api.sandbox
    one, two = sandbox.node(1).key, sandbox.node(2).key
    sample = load_sample("move-below.json")
    answer = await client.get(f"/api/move-below/{path(sandbox, 1)}/{path(sandbox, 2)}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["Code"], body["Message"]) == ("OK", f"Instance {one} moved below {two}")
    assert set(sample["Details"]) <= set(body["Details"])  # orchestrator's instance JSON
    assert body["Details"]["Key"] == key_json(sandbox, 1)
    assert body["Details"]["MasterKey"] == key_json(sandbox, 2)
    assert link(sandbox, 1) == below(sandbox, 2)
    await same_data(sandbox, 1, "after the route")

    now = topology(sandbox)
    for index, sibling, reason in (
        (3, 1, "move-below refused: instances are not siblings"),
        (3, 3, "move-below refused: cannot move .* below itself"),
    ):
        refused = await client.post(
            f"/api/move-below/{path(sandbox, index)}/{path(sandbox, sibling)}"
        )
        assert refused.status_code == 409
        assert refused.json()["Code"] == "ERROR"
        assert re.search(reason, refused.json()["Message"])
    bad = await client.post(f"/api/move-below/{path(sandbox, 1)}/127.0.0.1/x")
    assert bad.status_code == 400
    unknown = await client.post(f"/api/move-below/{path(sandbox, 1)}/nowhere/3306")
    assert unknown.status_code == 404
    assert topology(sandbox) == now
    assert len(api.recorder.audits) == 1
    assert api.recorder.audits[0].user == "anonymous"


async def test_the_cli_with_debug_and_stack(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = api.sandbox
    zero, one, two, three = (sandbox.node(i).key for i in range(4))
    async with serve_cli(api.context, capsys) as cli:
        assert await cli("-c", "move-below", "-i", one, "-d", two) == (0, f"{one}<{two}\n", "")
        assert link(sandbox, 1) == below(sandbox, 2)
        # -s is orchestrator's synonym of -d; Go-style flags; --debug logs each call
        code, out, err = await cli("-c", "move-below", "-i", three, "-s", zero, "-debug")
        assert (code, out) == (1, "")  # 3 and 0 are not siblings
        lines = err.splitlines()
        call = f"POST {cli.api}/api/move-below/127.0.0.1/{port(sandbox, 3)}/127.0.0.1/"
        assert any(line.startswith(f"orchestrator: debug: {call}") for line in lines)
        answered = [line for line in lines if "-> 409 Conflict in " in line]
        assert len(answered) == 1
        assert answered[0].endswith(" ms")
        assert lines[-1].startswith("orchestrator: move-below refused: instances are not")

        code, out, err = await cli("-c", "move-below", "-i", three, "-d", one, "--stack")
        assert (code, out) == (1, "")
        lines = err.splitlines()
        assert lines[0].startswith("orchestrator: move-below refused: instances are not siblings")
        assert lines[1] == (
            f"  HTTP 409 Conflict from POST {cli.api}/api/move-below/127.0.0.1/"
            f"{port(sandbox, 3)}/127.0.0.1/{port(sandbox, 1)}"
        )
        body = json.loads(lines[2].removeprefix("  response body: "))
        assert body["Code"] == "ERROR"
        assert "instances are not siblings" in body["Message"]
        assert "  stack:" in lines

        # orchestrator -c topology -i ... --debug / -stack (the example)
        code, out, err = await cli("-c", "topology", "-i", zero, "--debug")
        assert code == 0
        assert out.startswith(str(zero))
        assert f"orchestrator: debug: GET {cli.api}/api/topology/{zero} -> 200 OK in " in err
        code, out, err = await cli("-c", "topology", "-i", "nowhere:1", "-stack")
        assert (code, out) == (1, "")
        assert "  HTTP 404 Not Found from GET" in err
        # a usage error stays one line, whatever the flags
        code, out, err = await cli("-c", "move-below", "-i", one, "-debug", "-s", two, "-d", two)
        assert (code, out) == (2, "")
        assert err == "orchestrator: -s and -d are synonyms, yet both were specified\n"
        code, out, err = await cli("-c", "move-below", "-i", one, "-d", "-debug")
        assert (code, out) == (2, "")
        assert err.startswith("orchestrator: -d needs a value, got '-debug'")
        restore_star(sandbox)
        await settled(sandbox, star(sandbox))


async def test_the_routes_need_the_admin_role(tmp_path: Path) -> None:
    """move-below, enable-gtid and disable-gtid change servers: the admin role, on GET and POST
    (here no bus: an admin's request gets as far as asking for the worker, 503)."""
    store = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    try:
        await store.write_batch(
            (
                snapshot("127.0.0.1:3306"),
                snapshot("127.0.0.1:3307", "127.0.0.1:3306"),
                snapshot("127.0.0.1:3308", "127.0.0.1:3306"),
            )
        )
        settings = Settings(AuthenticationMethod="token", APITokens={"adm": "admin", "rd": "read"})
        context = ApiContext(settings=settings, store=store)
        transport = httpx.ASGITransport(app=create_app(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            for route in (
                "/api/move-below/127.0.0.1/3307/127.0.0.1/3308",
                "/api/enable-gtid/127.0.0.1/3307",
                "/api/disable-gtid/127.0.0.1/3307",
            ):
                for method in ("GET", "POST"):
                    assert (await client.request(method, route)).status_code == 401
                    reader = {"Authorization": "Bearer rd"}
                    denied = await client.request(method, route, headers=reader)
                    assert denied.status_code == 403, route
                    assert denied.json()["Code"] == "ERROR"
                    admin = {"Authorization": "Bearer adm"}
                    answer = await client.request(method, route, headers=admin)
                    assert answer.status_code == 503, route
                    assert "no NATS connection" in answer.json()["Message"]
    finally:
        await store.close()
