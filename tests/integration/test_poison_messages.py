"""Poison messages (issue 13 §1): a real ``orchestrator-topology-api`` process on a real
nats-server, fed messages that parse but cannot be applied (a recovery event naming no
instance, one of an unknown type, an analysis problem of no instance), one its SQLite store
cannot hold (a fencing token too large for an INTEGER), and garbage. The API refuses each for
good (terminated, kept as a dead letter with the reason, counted on /metrics), keeps serving,
writes the good messages published after them, and after a restart none of them comes back.

Before this, the first of them put the API into a crash loop: the exception killed the
consumer's TaskGroup and the process, the message was never acknowledged, and it came back
after every restart.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from orchestrator_shared.bus import Subjects
from orchestrator_shared.dead_letters import DEAD_LETTERS_STREAM, REASON_HEADER, SUBJECT_HEADER
from orchestrator_shared.events import (
    CLOUDEVENTS_TYPE_PREFIX,
    RecoveryData,
    RecoveryEvent,
    RecoveryPhase,
)
from tests import harness
from tests.harness.ports import free_port
from tests.integration.api_process import launch_api, metric
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import stop
from tests.integration.test_store import snapshot

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()


def recovery_event(**data: Any) -> dict[str, Any]:
    """A well-formed recovery event as JSON, with ``data`` fields replaced."""
    good = RecoveryData(recovery_id="r1", cluster="shop", analysis="DeadMaster", failed="db1:3306")
    event = RecoveryEvent.of(RecoveryPhase.STARTED, good, source="test")
    body = json.loads(event.to_json())
    body["data"].update(data)
    return body


def poison() -> list[tuple[str, bytes]]:
    """(subject, payload) of every poison message, each on a subject the API consumes."""
    root = SUBJECTS.root
    huge = recovery_event(recovery_id="r2", fencing_token=2**70)  # no SQLite INTEGER holds it
    unknown_type = recovery_event()
    unknown_type["type"] = CLOUDEVENTS_TYPE_PREFIX + "exploded"
    analysis = {"cluster": "shop", "problems": [{"instance": "not a key!", "code": "DeadMaster"}],
                "at": "2026-12-07T00:00:00Z"}  # fmt: skip
    return [
        (f"{root}.recovery.shop.started", json.dumps(recovery_event(failed="::::")).encode()),
        (f"{root}.recovery.shop.started", json.dumps(unknown_type).encode()),
        (f"{root}.analysis.shop", json.dumps(analysis).encode()),
        (f"{root}.recovery.shop.started", json.dumps(huge).encode()),
        (f"{root}.audit.shop", b"\xff\xfe not json"),
    ]


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[Any]:
    client = await nats.connect(url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def test_poison_messages_are_refused_kept_and_never_come_back(
    nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    port = free_port()
    config = {
        "NATSServers": [nats_server.url],
        "SQLite3DataFile": str(tmp_path / "orchestrator.sqlite3"),
    }
    process, url = launch_api(config, tmp_path, port=port)
    try:
        async with jetstream(nats_server.url) as js:
            for subject, payload in poison():
                await js.publish(subject, payload)
            good = snapshot("db1:3306")  # published after the poison: it must arrive
            await js.publish(SUBJECTS.snapshot(good.instance_key), good.to_json())

        def stored() -> bool:
            answer = httpx.get(f"{url}/api/instance/db1/3306", timeout=2)
            return answer.status_code == 200

        await asyncio.to_thread(wait_until, stored, timeout=20, what="the good snapshot stored")
        await asyncio.to_thread(
            wait_until,
            lambda: metric(url, "orchestrator_api_bus_messages_refused_total") == len(poison()),
            timeout=10,
            what="every poison message refused",
        )
        assert process.poll() is None, "the API died"

        # each is kept as a dead letter, with where it came from and why
        async with jetstream(nats_server.url) as js:
            info = await js.stream_info(DEAD_LETTERS_STREAM)
            assert info.state.messages == len(poison())
            letters = [
                await js.get_msg(DEAD_LETTERS_STREAM, seq)
                for seq in range(info.state.first_seq, info.state.last_seq + 1)
            ]
        kept = sorted((letter.headers or {}).get(SUBJECT_HEADER, "") for letter in letters)
        assert kept == sorted(subject for subject, _ in poison())
        reasons = [(letter.headers or {}).get(REASON_HEADER, "") for letter in letters]
        assert all(reasons), reasons
        assert any("exploded" in reason for reason in reasons), reasons
        assert any("Overflow" in reason or "too large" in reason for reason in reasons), reasons
    finally:
        code, output = stop(process)
    assert code == 0, output[-3000:]

    # a restart: none of them is delivered again, the good one is still there
    process, url = launch_api(config, tmp_path, port=port)
    try:
        await asyncio.sleep(2)  # time for anything left unacknowledged to come back
        assert metric(url, "orchestrator_api_bus_messages_refused_total") == 0
        answer = await asyncio.to_thread(httpx.get, f"{url}/api/instance/db1/3306", timeout=2)
        assert answer.status_code == 200
        assert process.poll() is None
    finally:
        code, output = stop(process)
    assert code == 0, output[-3000:]
