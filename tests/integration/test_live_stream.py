"""The web UI's live stream and whoami (issue 11) through the whole stack: a real 4-node
MariaDB sandbox, nats-server, etcd, discovery, topology-api and two recovery workers, each its
own process; the API under ``URLPrefix`` with ``multi`` authentication."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import nats
import pytest

from orchestrator_shared.bus import StoreChanged
from orchestrator_shared.events import RecoveryEvent
from tests.integration.stack_support import StackFactory

pytestmark = pytest.mark.integration

PREFIX = "/orc"
ADMIN = ("ops", "s3cret")
READER = ("readonly", "anything")


@dataclass
class Seen:
    """What arrived, each with the time it arrived (time.monotonic)."""

    stream: list[tuple[str, Any, float]] = field(default_factory=list)
    bus: list[tuple[str, bytes, float]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self, name: str) -> list[tuple[Any, float]]:
        return [(data, at) for kind, data, at in self.stream if kind == name]


async def read_stream(client: httpx.AsyncClient, seen: Seen, opened: asyncio.Event) -> None:
    """Parse the server-sent events of ``/api/stream`` into ``seen.stream`` until it ends."""
    try:
        async with client.stream("GET", f"{PREFIX}/api/stream", auth=READER) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            opened.set()
            name, data = "", []
            async for line in response.aiter_lines():
                if line.startswith("retry: "):
                    seen.stream.append(("retry", int(line.removeprefix("retry: ")), 0.0))
                elif line.startswith("event: "):
                    name = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data.append(line.removeprefix("data: "))
                elif not line and name:
                    seen.stream.append((name, json.loads("\n".join(data)), time.monotonic()))
                    name, data = "", []
    finally:
        seen.ended.set()


@contextlib.asynccontextmanager
async def on_the_bus(url: str, seen: Seen) -> AsyncIterator[None]:
    nc = await nats.connect(url)

    async def take(msg: Any) -> None:
        seen.bus.append((msg.subject, msg.data, time.monotonic()))

    await nc.subscribe("orchestrator.v1.store.changed", cb=take)
    await nc.subscribe("orchestrator.v1.recovery.>", cb=take)
    await nc.flush()
    try:
        yield
    finally:
        await nc.close()


async def until(check: Any, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)
    return found


async def serving(client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.get(f"{PREFIX}/api/health", auth=ADMIN)).status_code == 200:
                return
        assert time.monotonic() < deadline, "the API did not start"
        await asyncio.sleep(0.1)


async def test_whoami_and_the_stream_of_snapshots_and_a_failover(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        AuthenticationMethod="multi",
        HTTPAuthUser=ADMIN[0],
        HTTPAuthPassword=ADMIN[1],
        URLPrefix=PREFIX,
    )
    sandbox, master = stack.sandbox, stack.sandbox.master.key
    async with httpx.AsyncClient(base_url=stack.api, timeout=5) as client:
        await serving(client)
        # whoami, for each kind of caller
        admin = await client.get(f"{PREFIX}/api/whoami", auth=ADMIN)
        assert admin.json() == {"User": "ops", "Role": "admin", "CanChange": True, "Reason": ""}
        reader = await client.get(f"{PREFIX}/api/whoami", auth=READER)
        assert reader.json() == {
            "User": "readonly",
            "Role": "read",
            "CanChange": False,
            "Reason": "user readonly has the read role only",
        }
        for auth in (None, ("ops", "wrong")):
            denied = await client.get(f"{PREFIX}/api/whoami", auth=auth)
            assert denied.status_code == 401
            assert denied.headers["www-authenticate"].startswith("Basic")
        assert (await client.get(f"{PREFIX}/api/stream")).status_code == 401
        assert (await client.get("/api/whoami", auth=ADMIN)).status_code == 404  # no prefix

        seen, opened = Seen(), asyncio.Event()
        async with on_the_bus(stack.nats_url, seen):
            reading = asyncio.create_task(read_stream(client, seen, opened))
            async with asyncio.timeout(10):
                await opened.wait()

            # snapshots: a `changed` event follows its bus notice within a second, and the
            # store has them (a refetch sees the instance). The hub merges notices, so the
            # first event after the stream opened may stand for notices from before the test
            # listened on the bus: the check is on an event whose notices the test heard.
            def notices_for(at: float) -> list[float]:
                return [
                    when
                    for subject, body, when in seen.bus
                    if subject.endswith("store.changed")
                    and when <= at + 0.05
                    and master in StoreChanged.model_validate_json(body).instances
                ]

            def heard_event() -> tuple[dict[str, Any], float, list[float]] | None:
                for data, at in seen.events("changed"):
                    if master in data["Instances"] and (covering := notices_for(at)):
                        return data, at, covering
                return None

            first, at, covering = await until(
                heard_event, timeout=20, what="a changed event for the master after its notice"
            )
            assert seen.stream[0][:2] == ("retry", 1000)
            assert master in first["Clusters"]  # the cluster is named by its master
            assert at - max(covering) < 1.0
            instance = await client.get(f"{PREFIX}/api/instance/127.0.0.1/{sandbox.master.port}")
            assert instance.status_code == 401  # the stream's reader needs the read role too
            instance = await client.get(
                f"{PREFIX}/api/instance/127.0.0.1/{sandbox.master.port}", auth=READER
            )
            assert instance.status_code == 200

            # coalesced: never two changed events within ~100 ms
            times = [when for _, when in seen.events("changed")]
            assert all(b - a > 0.08 for a, b in itertools.pairwise(times)), times

            # a failover: every recovery event on the bus reaches the stream within a second
            await asyncio.sleep(1.5)  # every worker has read the fleet; one leads
            sandbox.kill(0)
            await until(
                lambda: any(
                    data["type"].endswith(".completed") for data, _ in seen.events("recovery")
                ),
                timeout=30,
                what="the recovery's completed event on the stream",
            )

            def on_bus() -> dict[str, float]:
                return {
                    RecoveryEvent.model_validate_json(body).id: when
                    for subject, body, when in seen.bus
                    if ".recovery." in subject
                }

            streamed = seen.events("recovery")
            phases = [data["type"].rsplit(".", 1)[-1] for data, _ in streamed]
            assert phases[0] == "detected" and phases[-1] == "completed", phases
            # the test's own subscriber may hear an event a moment after the API's hub did
            heard = await until(
                lambda: (
                    (found := on_bus()).keys() >= {data["id"] for data, _ in streamed} and found
                ),
                timeout=5,
                what="every streamed recovery event heard on the bus too",
            )
            for data, when in streamed:
                assert data["data"]["failed"] == master
                gap = abs(when - heard[data["id"]])
                assert gap < 1.0, (data["type"], gap)
            assert RecoveryEvent.model_validate(streamed[-1][0]).data.successor

            # stopping the API ends the open stream at once; uvicorn does not wait on it
            assert stack.api_process is not None
            stopping = time.monotonic()
            stack.api_process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                await seen.ended.wait()
            code = await asyncio.to_thread(stack.api_process.wait, 10)
            assert code == 0
            assert time.monotonic() - stopping < 3.0  # uvicorn's grace for open responses is 5 s
            await reading
