"""Two questions the topology operations ask a server over :class:`~.mysql.Links`: does it
replicate from a given master yet, and which replication user should a server that is to
replicate from it use (``ReplicationCredentialsQuery``)."""

from __future__ import annotations

import asyncio
import time

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.takeover_sql import parse_credentials
from orchestrator_recovery.sql import Progress, following_check, parse_replica_status
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.instance_key import InstanceKey

POLL = 0.1


async def replicating_from(
    links: Links, key: InstanceKey, master: InstanceKey, *, within: float, poll: float = POLL
) -> str | None:
    """None once ``key`` replicates from ``master`` (:func:`following_check`); else why not,
    after ``within`` seconds (or at once when it failed for good)."""
    deadline = time.monotonic() + within
    why = "not read"
    while time.monotonic() < deadline:
        try:
            rows = await links.rows(key, "SHOW ALL SLAVES STATUS")
        except StatementFailed as exc:
            why = exc.message
        else:
            check = following_check(parse_replica_status(rows), master)
            if check.progress is Progress.DONE:
                return None
            why = check.detail
            if check.progress is Progress.FAILED:
                return why
        await asyncio.sleep(poll)
    return f"not replicating from {master} within {within:g}s: {why}"


async def replication_credentials(links: Links, key: InstanceKey, query: str) -> tuple[str, str]:
    """``ReplicationCredentialsQuery`` run on ``key``: the user and password a server that is
    to replicate from ``key`` uses; OperationRefused when it fails or answers nothing."""
    try:
        found = parse_credentials(await links.rows(key, query))
    except StatementFailed as exc:
        raise OperationRefused(
            f"ReplicationCredentialsQuery failed on {key}: {exc.message}"
        ) from None
    if found is None:
        raise OperationRefused(f"ReplicationCredentialsQuery answered nothing on {key}")
    return found
