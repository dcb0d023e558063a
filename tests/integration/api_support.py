"""The harness the operation tests share: the real :class:`CommandResponder` wired with some
handlers over a real nats-server, a real topology-api app on a SQLite store (in-process through
httpx, and served by uvicorn for the CLI), the CLI's ``run_client``, and readers of what a
MariaDB sandbox node replicates. One copy, so every module wires the stack the same way."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import nats
import pytest
import uvicorn

from orchestrator_api.app import create_app
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_api.http.context import ApiContext
from orchestrator_api.store import Store, open_store
from orchestrator_cli.client import run_client
from orchestrator_cli.sandbox import TOPOLOGY_PASSWORD, TOPOLOGY_USER, Sandbox
from orchestrator_cli.sandbox.client import NodeSession
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.operations.commands import (
    CommandResponder,
    Handler,
    Leadership,
    OperationLocks,
)
from orchestrator_shared.bus import Subjects
from orchestrator_shared.command_signing import CommandSigner, CommandVerifier, generate_key
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import LeaseLost
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.harness.ports import free_port
from tests.integration.test_store import snapshot

ACCESS = MySQLAccess(user=TOPOLOGY_USER, password=TOPOLOGY_PASSWORD, connect_timeout=1.0)

Link = tuple[int, str, str, str] | None


# --- what a sandbox node replicates -----------------------------------------------------------


def replica_row(sandbox: Sandbox, index: int) -> dict[str, Any]:
    """SHOW SLAVE STATUS of node ``index`` ({} when it replicates from nobody)."""
    node = sandbox.node(index)
    with NodeSession(node.key, unix_socket=node.socket) as session:
        rows = session.dicts("SHOW SLAVE STATUS")
    return rows[0] if rows else {}


def link(sandbox: Sandbox, index: int) -> Link:
    """Master_Port, IO, SQL, Using_Gtid of ``index`` (None: not a replica)."""
    row = replica_row(sandbox, index)
    if not row:
        return None
    return (
        int(row["Master_Port"]),
        str(row["Slave_IO_Running"]),
        str(row["Slave_SQL_Running"]),
        str(row["Using_Gtid"]),
    )


def checksum(sandbox: Sandbox, index: int) -> int:
    return int(sandbox.execute(index, "CHECKSUM TABLE sandbox.t")[0][1])


def path(sandbox: Sandbox, index: int) -> str:
    """Node ``index`` as the routes take it: ``host/port``."""
    return f"127.0.0.1/{sandbox.node(index).port}"


def star_snapshots(sandbox: Sandbox, master: int = 0) -> list[InstanceSnapshot]:
    """The store's view of the sandbox as built: ``master`` and every other node below it."""
    key = sandbox.node(master).key
    return [snapshot(node.key, None if node.index == master else key) for node in sandbox.nodes]


# --- the guard and audit the handlers are given -----------------------------------------------


@dataclass
class Recorder:
    """Counts guard calls (and can lose the lease at one), records the audit."""

    audits: list[AuditEvent] = field(default_factory=list)
    guards: int = 0
    fail_at: int | None = None  # the guard call (1-based) that raises LeaseLost
    on_guard: dict[int, Callable[[], object]] = field(default_factory=dict)

    async def guard(self) -> object:
        self.guards += 1
        if self.guards in self.on_guard:
            await asyncio.to_thread(self.on_guard[self.guards])
        if self.fail_at is not None and self.guards >= self.fail_at:
            raise LeaseLost("lease lost (test)")
        return None

    async def audit(self, event: AuditEvent) -> object:
        self.audits.append(event)
        return True


# --- the responder and the API ----------------------------------------------------------------


@dataclass
class ResponderApi:
    client: httpx.AsyncClient  # the API app in-process
    context: ApiContext
    store: Store
    requester: NatsRequester
    stop_worker: Callable[[], Awaitable[None]]  # the responder stops answering


@asynccontextmanager
async def responder_api(
    nats_url: str,
    tmp_path: Path,
    guard: Callable[[], Awaitable[object]],
    operations: Mapping[str, Handler],
    *,
    locks: OperationLocks | None = None,
) -> AsyncIterator[ResponderApi]:
    """The real responder answering ``operations`` (the lease always held, checked by
    ``guard``) and the API on a fresh SQLite store, asking it over ``nats_url``."""
    store: Store = await open_store("sqlite", sqlite_path=tmp_path / "orchestrator.sqlite3")
    nc = await nats.connect(nats_url)
    signing_key = generate_key()  # the API signs, the responder verifies, as in a deployment
    responder = CommandResponder(
        nc,
        Subjects(),
        cast(Any, None),  # the recovery worker and control: not used by these operations
        cast(Any, None),
        Leadership(lambda: True, guard, lambda: 1),
        operations=operations,
        locks=locks,
        verifier=CommandVerifier(signing_key),
    )
    answering = asyncio.create_task(responder.run())
    await asyncio.sleep(0.1)
    await nc.flush()
    requester = NatsRequester(Subjects(), signer=CommandSigner(signing_key))
    await requester.connect([nats_url])
    context = ApiContext(settings=Settings(), store=store, discovery=requester)

    async def stop_worker() -> None:
        answering.cancel()
        with suppress(asyncio.CancelledError):
            await answering

    transport = httpx.ASGITransport(app=create_app(context))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield ResponderApi(client, context, store, requester, stop_worker)
    finally:
        await stop_worker()
        await requester.close()
        await nc.close()
        await store.close()


@dataclass
class SandboxApi:
    client: httpx.AsyncClient
    context: ApiContext
    recorder: Recorder
    sandbox: Sandbox


@asynccontextmanager
async def star_api(
    nats_url: str,
    tmp_path: Path,
    sandbox: Sandbox,
    recorder: Recorder,
    operations: Mapping[str, Handler],
) -> AsyncIterator[SandboxApi]:
    """:func:`responder_api` for ``operations`` guarded by ``recorder``, its store holding
    ``sandbox`` as built (node 0 the master of the others)."""
    async with responder_api(nats_url, tmp_path, recorder.guard, operations) as harness:
        await harness.store.write_batch(star_snapshots(sandbox))
        yield SandboxApi(harness.client, harness.context, recorder, sandbox)


# --- the API served over HTTP, and the CLI against it -----------------------------------------


@asynccontextmanager
async def serve(context: ApiContext) -> AsyncIterator[str]:
    """The API app of ``context`` served by uvicorn on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(context),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            proxy_headers=False,  # as the API serves: the client is the TCP peer
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def run_cli(api: str, *args: str) -> tuple[int, str]:
    """The CLI run once against ``api``: its exit code and what it printed."""
    out = io.StringIO()
    code = run_client([*args, "--api", api], out=out, environ={})
    return code, out.getvalue()


@dataclass
class Cli:
    """``await cli(*args)``: the CLI's exit code, stdout and stderr (taken from ``capsys``)."""

    api: str
    capsys: pytest.CaptureFixture[str]

    async def __call__(self, *args: str) -> tuple[int, str, str]:
        code, out = await asyncio.to_thread(run_cli, self.api, *args)
        return code, out, self.capsys.readouterr().err


@asynccontextmanager
async def serve_cli(context: ApiContext, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Cli]:
    async with serve(context) as api:
        yield Cli(api, capsys)
