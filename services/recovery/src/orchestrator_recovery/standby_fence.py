"""A connection kept open to every master, so that a master that hangs can be fenced the
instant it wakes up.

A hung master (SIGSTOP, a stalled disk) accepts TCP connections into its backlog but
authenticates nobody: a fence that connects after the hang only lands once the woken server has
worked through the handshakes, and in those milliseconds its application clients' statements
(on connections opened before the hang) run first. A connection authenticated *before* the hang
does not need the server to do anything but read: the recovery leader writes
``SET GLOBAL read_only = 1`` on it as soon as the master is failed over, the statement waits in
the socket, and the woken server executes it as it resumes, alongside (not after) whatever its
clients send then. See docs/recovery.md, "Hung master", for what this leaves open.

The leader keeps one such link per master (an instance with replicas, answering or not: a link
opened before a hang is kept through it), opened in the background and renewed every
:data:`RENEW_SECONDS`; links to instances that are no longer masters are closed. Nothing is
sent on a link except that one fencing statement, behind the leader's guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiomysql
import pymysql

from orchestrator_adapters.mysql_client import connect_guarded
from orchestrator_adapters.ports import Guard
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_shared.errors import OrchestratorError
from orchestrator_shared.instance_key import InstanceKey

__all__ = ["StandbyFence"]

log = logging.getLogger(__name__)

RENEW_SECONDS = 3600.0
"""A link is replaced after this long (well below MariaDB's default ``wait_timeout``, 8 h)."""
CONNECT_SECONDS = 1.0
FENCE_SQL = "SET GLOBAL read_only = 1"


@dataclass
class _Link:
    conn: aiomysql.Connection
    opened: float


class StandbyFence:
    """The kept links and the fence sent on them."""

    def __init__(self, access: MySQLAccess) -> None:
        self._access = access
        self._links: dict[InstanceKey, _Link] = {}
        self._opening: dict[InstanceKey, asyncio.Task[None]] = {}
        self._fencing: set[InstanceKey] = set()

    def keep(self, masters: Iterable[InstanceKey]) -> None:
        """Links to exactly ``masters``: new ones opened in the background (an attempt to a
        hung one ends after its connect timeout), old ones renewed, the others closed (not
        one a fence is waiting on)."""
        wanted = set(masters)
        now = time.monotonic()
        for key in list(self._links):
            link = self._links[key]
            if key in self._fencing:
                continue
            if key not in wanted or link.conn.closed or now - link.opened > RENEW_SECONDS:
                del self._links[key]
                link.conn.close()
        for key in wanted - set(self._links) - set(self._opening):
            if not self._access.hosts.refusal(key):
                self._opening[key] = asyncio.create_task(self._open(key), name=f"link {key}")

    def linked(self, key: InstanceKey) -> bool:
        """Whether a link to ``key`` is open now."""
        link = self._links.get(key)
        return link is not None and not link.conn.closed

    async def _open(self, key: InstanceKey) -> None:
        try:
            conn = await connect_guarded(
                host=key.host,
                port=key.port,
                user=self._access.user,
                password=self._access.password,
                connect_timeout=min(self._access.connect_timeout, CONNECT_SECONDS),
                autocommit=True,
                ssl=self._access.tls,
            )
        except (OrchestratorError, pymysql.err.MySQLError, OSError, TimeoutError) as exc:
            log.debug("%s: no standby fencing link: %s", key, exc)
            return
        finally:
            self._opening.pop(key, None)
        self._links[key] = _Link(conn, time.monotonic())

    async def fence(self, key: InstanceKey, guard: Guard, *, within: float) -> bool:
        """``guard()``, then ``SET GLOBAL read_only = 1`` on ``key``'s kept link, waiting up
        to ``within`` seconds for the server to run it (a hung one runs it when it wakes).
        Whether it ran; False at once when there is no link."""
        link = self._links.get(key)
        if link is None or link.conn.closed:
            return False
        self._fencing.add(key)  # (first: keep() must not close it while the guard answers)
        try:
            await guard()
            async with asyncio.timeout(within), link.conn.cursor() as cursor:
                await cursor.execute(FENCE_SQL)
            log.warning("%s: read_only set on the link kept from before it hung", key)
            return True
        except (TimeoutError, pymysql.err.MySQLError, OSError) as exc:
            log.info("%s: fencing on the kept link did not answer: %r", key, exc)
            return False
        finally:
            self._fencing.discard(key)
            self._links.pop(key, None)
            link.conn.close()  # used once: a new one is opened if it serves again

    def close(self) -> None:
        """Close every link (leadership ended, or the worker stops); ``keep`` opens them
        again."""
        for task in self._opening.values():
            task.cancel()
        for link in self._links.values():
            with contextlib.suppress(Exception):
                link.conn.close()
        self._links.clear()
