"""What the web UI asks besides orchestrator's API (issue 11): who am I, and the live stream.

* ``GET /api/whoami``: the caller's user and role, and whether (and why not) they may change
  anything: ``{"User", "Role": "read"|"admin", "CanChange", "Reason"}``.
* ``GET /api/stream``: server-sent events fed from NATS (:mod:`orchestrator_api.live`):
  ``changed`` (the store committed snapshots of these clusters and instances), ``recovery``,
  ``analysis``, ``audit`` (the events as on the bus), a ``: keep-alive`` comment every 15 s.

Both need the read role, like every other GET.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from orchestrator_api.auth import Principal, Role
from orchestrator_api.http.context import Context
from orchestrator_api.http.deps import ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_api.live import KEEPALIVE_FRAME, KEEPALIVE_SECONDS, RETRY_FRAME
from orchestrator_shared.config import Settings

router = APIRouter(prefix="/api")


def whoami_answer(settings: Settings, who: Principal) -> dict[str, Any]:
    """What ``/api/whoami`` says of ``who``: no user name when no authentication is set."""
    open_api = settings.AuthenticationMethod in {"", "none"}
    user = "" if open_api else who.user
    can_change = who.role >= Role.ADMIN
    reason = ""
    if not can_change:
        reason = f"user {who.user} has the read role only"
    return {
        "User": user,
        "Role": "admin" if can_change else "read",
        "CanChange": can_change,
        "Reason": reason,
    }


@router.get("/whoami")
async def whoami(context: Context, who: ReadAccess) -> dict[str, Any]:
    return whoami_answer(context.settings, who)


@router.get("/stream", response_class=StreamingResponse)
async def stream(context: Context, who: ReadAccess) -> StreamingResponse:
    hub = context.live
    if hub is None:
        raise ApiError(503, "the live stream is not available (no NATS connection)")
    listener = hub.listen()  # from now on: what happens before the first frame is not lost

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield RETRY_FRAME
            while True:
                batch = await listener.next(KEEPALIVE_SECONDS)
                if batch is None:
                    return  # dropped (fell behind) or the server is stopping
                yield b"".join(batch) if batch else KEEPALIVE_FRAME
        finally:
            hub.forget(listener)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
