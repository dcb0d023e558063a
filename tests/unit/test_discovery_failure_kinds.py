"""A failed discovery reply says what kind of failure it is and the API's status follows from the
kind, not from the error's wording; a reply without a kind (a discovery service of the previous
version, mid rolling-upgrade) is still read by its wording, with the same statuses as before."""

from __future__ import annotations

import pytest

from orchestrator_api.http.context import discovery_status
from orchestrator_shared.bus import DiscoveryFailure, DiscoveryReply

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (DiscoveryFailure.BAD_REQUEST, 400),
        (DiscoveryFailure.HOST_REFUSED, 403),
        (DiscoveryFailure.UNREACHABLE, 502),
        (DiscoveryFailure.UNAVAILABLE, 503),
    ],
)
def test_the_status_follows_the_kind_whatever_the_wording(
    kind: DiscoveryFailure, status: int
) -> None:
    reply = DiscoveryReply(
        ok=False, verb="discover", error="cannot probe (wording ignored)", kind=kind
    )
    assert discovery_status(reply.model_dump(mode="json")) == status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        ("invalid instance key 'db:x': port 'x' is not a number", 400),
        ("refused: evil:3306: host evil is not allowed", 403),
        ("cannot probe 127.0.0.1:1: Can't connect", 502),
        ("NATS: connection closed", 503),
    ],
)
def test_a_reply_without_a_kind_is_read_by_its_wording(error: str, status: int) -> None:
    assert discovery_status({"ok": False, "verb": "discover", "error": error}) == status


def test_a_kind_this_version_does_not_know_is_no_kind() -> None:
    body = '{"schema": 1, "ok": false, "verb": "discover", "error": "refused: x", "kind": "new"}'
    reply = DiscoveryReply.model_validate_json(body)
    assert reply.kind is None
    assert discovery_status({"ok": False, "error": "refused: x", "kind": "new"}) == 403
