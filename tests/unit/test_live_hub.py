"""The live stream's hub (orchestrator_api.live) without NATS, and /api/whoami's answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from orchestrator_api.auth import Principal, Role
from orchestrator_api.http.routes_live import whoami_answer
from orchestrator_api.live import ChangedNotices, Listener, LiveHub, sse_frame
from orchestrator_shared.bus import StoreChanged, Subjects
from orchestrator_shared.config import Settings

pytestmark = pytest.mark.unit


def changed(*instances: str, cluster: str = "c:1") -> bytes:
    return StoreChanged(clusters=(cluster,), instances=instances).to_json()


def events(frames: list[bytes]) -> list[tuple[str, Any]]:
    """(event, parsed data) of each frame."""
    found = []
    for frame in b"".join(frames).decode().split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        name = lines[0].removeprefix("event: ")
        data = "\n".join(line.removeprefix("data: ") for line in lines[1:])
        found.append((name, json.loads(data)))
    return found


def test_a_frame_has_one_data_line_per_line() -> None:
    assert sse_frame("audit", '{"a":1}') == b'event: audit\ndata: {"a":1}\n\n'
    assert sse_frame("x", "a\nb") == b"event: x\ndata: a\ndata: b\n\n"


def test_changed_notices_merge_until_taken() -> None:
    notices = ChangedNotices()
    assert not notices.pending
    notices.add(["c:1"], ["h:2", "h:1"])
    notices.add(["c:1", "c:3"], ["h:1"])
    assert json.loads(notices.take()) == {"Clusters": ["c:1", "c:3"], "Instances": ["h:1", "h:2"]}
    assert not notices.pending


async def test_a_listener_that_falls_behind_is_dropped_not_waited_for() -> None:
    listener = Listener(capacity=2)
    listener.offer(b"1")
    listener.offer(b"2")
    assert await listener.next(0.01) == [b"1", b"2"]
    for frame in (b"3", b"4", b"5"):  # the third one does not fit
        listener.offer(frame)
    assert listener.dropped
    assert await listener.next(0.01) is None
    assert await Listener().next(0.01) == []  # nothing came: the caller sends a keep-alive


async def test_events_reach_every_listener_and_changed_is_coalesced() -> None:
    hub = LiveHub(Subjects(), coalesce=0.2)
    first, second = hub.listen(), hub.listen()
    hub.receive("changed", changed("h:1"))  # sent at once: none sent in the last 0.2 s
    await asyncio.sleep(0.02)
    hub.receive("changed", changed("h:2"))
    hub.receive("changed", changed("h:3", cluster="c:9"))
    hub.receive("recovery", b'{"type": "io.orchestrator.recovery.detected"}')
    got = events(await first.next(0.1) or [])
    assert got == [
        ("changed", {"Clusters": ["c:1"], "Instances": ["h:1"]}),
        ("recovery", {"type": "io.orchestrator.recovery.detected"}),
    ]
    later = events(await first.next(0.5) or [])  # the two merged, once 0.2 s passed
    assert later == [("changed", {"Clusters": ["c:1", "c:9"], "Instances": ["h:2", "h:3"]})]
    assert [name for name, _ in events(await second.next(0.1) or [])] == [
        "changed",
        "recovery",
        "changed",
    ]
    await hub.close()


async def test_malformed_messages_are_skipped_and_slow_clients_leave_the_hub() -> None:
    hub = LiveHub(Subjects(), capacity=1)
    slow, fast = hub.listen(), hub.listen()
    hub.receive("audit", b"not json")
    hub.receive("changed", b'{"clusters": 3}')
    hub.receive("audit", b'{"type": "relocate"}')
    assert events(await fast.next(0.01) or []) == [("audit", {"type": "relocate"})]
    hub.receive("analysis", b'{"cluster": "c:1", "problems": []}')  # slow has not read: full
    assert slow.dropped
    assert not fast.dropped
    assert (hub.listeners, hub.dropped) == (1, 1)
    assert events(await fast.next(0.01) or []) == [("analysis", {"cluster": "c:1", "problems": []})]
    await hub.close()


async def test_ending_the_streams_ends_every_listener_and_new_ones() -> None:
    hub = LiveHub(Subjects())
    listener = hub.listen()
    hub.end_streams()
    assert await listener.next(5) is None
    assert await hub.listen().next(5) is None
    assert hub.listeners == 0


def test_whoami_says_who_may_change_what() -> None:
    multi = Settings.model_validate(
        {"AuthenticationMethod": "multi", "HTTPAuthUser": "ops", "HTTPAuthPassword": "pw"}
    )
    assert whoami_answer(multi, Principal("readonly", Role.READ)) == {
        "User": "readonly",
        "Role": "read",
        "CanChange": False,
        "Reason": "user readonly has the read role only",
    }
    assert whoami_answer(multi, Principal("ops", Role.ADMIN)) == {
        "User": "ops",
        "Role": "admin",
        "CanChange": True,
        "Reason": "",
    }
    open_api = Settings.model_validate({})
    assert whoami_answer(open_api, Principal("anonymous", Role.ADMIN))["User"] == ""
