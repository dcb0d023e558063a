"""Leadership as orchestrator's clients ask for it: ``leader-check[/{errorStatusCode}]``,
``routed-leader-check`` and the raft routes (``raft-state``, ``raft-leader``, ``raft-health``),
answered from the etcd election as this API sees it.

orchestrator elects one of its own nodes (raft, or a row in a shared backend) and that node
acts. Here the node that acts is the active recovery worker, elected on etcd; the coordinator
reports every change of leadership on ``orchestrator.v1.leader`` and
:class:`~orchestrator_api.leadership.LeaderWatch` keeps the latest report. Every API replica
serves reads and forwards operations to that worker, so each replica answers for the leader:

============================  ==============================  ===============================
what this API last heard      ``leader-check``, ``raft-*``    ``raft-state``
============================  ==============================  ===============================
a recovery worker leads       ``"OK"``, ``"healthy"``, the    ``"Leader"``
                              worker (``id@host``)
the coordinator: none leads   503 (or the given code)         ``"Candidate"`` (an election is
                                                              pending)
no report yet                 503 (or the given code)         ``"Follower"`` (waiting to hear
                                                              of a leader)
============================  ==============================  ===============================

``raft-leader-hostname`` (orchestrator-client: ``raft-state``, then ``status`` →
``Details.Hostname``) gets the leading worker's host from ``/api/status``. A bare API with no
leader watch (tests, an embedded use) answers ``leader-check`` with ``"OK"`` (nothing to ask)
and the raft routes with 503: it has no election to report.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from orchestrator_api import wire
from orchestrator_api.http.context import ApiContext, Context
from orchestrator_api.http.deps import ReadAccess
from orchestrator_api.http.errors import ApiError
from orchestrator_shared.bus import LeaderEvent

router = APIRouter(prefix="/api")

NOT_LEADING = 503  # leader-check's answer while no worker leads (orchestrator: 404)
LEADER, CANDIDATE, FOLLOWER = "Leader", "Candidate", "Follower"


def _why_not(latest: LeaderEvent | None) -> str:
    return "no report from the coordinator yet" if latest is None else "none leads"


def leader_check_answer(context: ApiContext, status: int = NOT_LEADING) -> str | JSONResponse:
    """``"OK"`` while a recovery worker leads (or with no coordinator to ask), else ``status``
    with an error envelope saying why."""
    # Every API replica serves reads and forwards operations to the active recovery worker,
    # so each is a valid target while a worker leads; with none leading, the operations it
    # would forward cannot run.
    if context.leader is None:
        return "OK"  # no coordinator configured to ask (tests, a bare API)
    latest = context.leader.latest
    if latest is not None and latest.leader is not None:
        return "OK"
    return JSONResponse(
        wire.error_envelope(f"No active recovery worker: {_why_not(latest)}"),
        status_code=status,
    )


def _status_code(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 200 <= int(text) <= 599:
        raise ApiError(
            400,
            f"invalid errorStatusCode {text!r}: expected an HTTP status code from 200 to 599",
        )
    return int(text)


@router.get("/leader-check/{error_status_code}", response_model=None)
async def leader_check_with_status(error_status_code: str, context: Context) -> str | JSONResponse:
    """orchestrator's ``leader-check/:errorStatusCode``: the status to answer when this is
    not the leader (a load balancer that expects, say, 503 or 429)."""
    return leader_check_answer(context, _status_code(error_status_code))


@router.get("/routed-leader-check", response_model=None)
async def routed_leader_check(context: Context) -> str | JSONResponse:
    """orchestrator sends it through its proxy to the leader; every API replica answers for
    the leader here, so it is ``leader-check``."""
    return leader_check_answer(context)


def _election(context: ApiContext, route: str) -> LeaderEvent | None:
    if context.leader is None:
        raise ApiError(503, f"{route}: this API follows no leader election (no coordinator)")
    return context.leader.latest


def raft_state(latest: LeaderEvent | None) -> str:
    """The raft word for what the API last heard (module docstring)."""
    if latest is None:
        return FOLLOWER
    return LEADER if latest.leader is not None else CANDIDATE


def leader_name(event: LeaderEvent) -> str:
    """How the API names the leading worker (also ``/api/health``'s ``RaftLeader``)."""
    identity = event.leader
    return "" if identity is None else f"{identity.id}@{identity.host}"


@router.get("/raft-state")
async def raft_state_route(context: Context, _: ReadAccess) -> str:
    return raft_state(_election(context, "raft-state"))


@router.get("/raft-leader")
async def raft_leader(context: Context, _: ReadAccess) -> str:
    latest = _election(context, "raft-leader")
    if latest is None or latest.leader is None:
        raise ApiError(503, f"raft-leader: no recovery worker leads ({_why_not(latest)})")
    return leader_name(latest)


@router.get("/raft-health")
async def raft_health(context: Context, _: ReadAccess) -> str:
    latest = _election(context, "raft-health")
    if latest is None or latest.leader is None:
        raise ApiError(503, f"unhealthy: no recovery worker leads ({_why_not(latest)})")
    return "healthy"
