"""Replication control, part 2 (issue 6): ``stop-replica-nice``, ``reset-replica``,
``detach-replica-master-host``, ``reattach-replica-master-host``, ``skip-query`` and
``delay-replication`` (``arguments["seconds"]``).

Each reads the instance's default replication connection first and refuses, changing nothing,
when the operation does not apply (not a replica, already detached, no SQL error to skip, ...).
Then, through :class:`~orchestrator_recovery.operations.base.Operator`, every statement goes
right after the lease guard, a failure after a change is undone where that is possible
(replication started again as it was, the skip counter cleared) and reported exactly, and one
audit entry is published.

- ``stop-replica-nice``: ``STOP SLAVE IO_THREAD``, the SQL thread (started if it was stopped
  without an error) applies what was received, then ``STOP SLAVE``. The wait is bounded
  (``nice_wait``); past it, or if the SQL thread stops with an error, the threads are put back as
  they were and the operation is refused. A delayed replica (``SQL_Delay``) is not waited for,
  as in orchestrator. Both threads already stopped: nothing to do.
- ``reset-replica``: ``STOP SLAVE`` then ``RESET SLAVE ALL``; the audit names the former master
  and the GTID position, which is all it takes to point the instance back.
- ``detach-replica-master-host``: ``STOP SLAVE`` and ``CHANGE MASTER TO master_host='//host'``
  (port, credentials, GTID mode kept). Replication stays stopped (orchestrator starts it again,
  and the IO thread then fails on the unresolvable host). ``reattach-replica-master-host``
  undoes it: ``CHANGE MASTER TO master_host='host', master_use_gtid=<mode kept>`` and
  ``START SLAVE``; it refuses an instance that is not detached.
- ``skip-query``: on a replica whose SQL thread stopped with an error, ``SET GLOBAL
  sql_slave_skip_counter = 1`` then ``START SLAVE``. On MariaDB this skips exactly the failing
  transaction (the counter counts event groups, and ``gtid_slave_pos`` moves past it), so it is
  done with GTID too, where orchestrator refuses; MySQL with GTID is refused.
- ``delay-replication``: ``CHANGE MASTER TO master_delay=N`` between stopping the threads that
  run and starting them again (a stopped thread stays stopped).
"""

from __future__ import annotations

import asyncio
import time

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import Body, Operator, Outcome, Steps
from orchestrator_recovery.operations.control_sql import (
    RESET_REPLICA,
    SHOW_ALL_REPLICAS_STATUS,
    SKIP_NONE,
    SKIP_ONE,
    START_IO_THREAD,
    START_REPLICA,
    START_SQL_THREAD,
    STOP_IO_THREAD,
    STOP_REPLICA,
    STOP_SQL_THREAD,
    Replication,
    change_host_sql,
    delay_sql,
    detached_host,
    parse_seconds,
    reattached_host,
    skip_refusal,
    thread_statements,
    uses_gtid,
)
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.sql import Dialect, Progress, applied_check, parse_replica_status
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import OperationRefused, StepFailed
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor

NICE_WAIT = 30.0  # seconds stop-replica-nice waits for the SQL thread to apply the relay log
SETTLE = 3.0  # seconds to let START SLAVE's threads report Yes before answering
POLL = 0.05
MARIADB = Dialect(Flavor.MARIADB)


def _replica(key: InstanceKey, replication: Replication | None) -> Replication:
    if replication is None:
        raise OperationRefused(f"instance is not a replica: {key}")
    return replication


class Control:
    """The handlers; one instance serves them all."""

    def __init__(
        self, operator: Operator, *, nice_wait: float = NICE_WAIT, settle: float = SETTLE
    ) -> None:
        self._op = operator
        self._nice_wait = nice_wait
        self._settle = settle

    async def _version(self, links: Links, key: InstanceKey) -> str:
        try:
            rows = await links.rows(key, "SELECT @@global.version AS version")
        except StatementFailed as exc:
            raise OperationRefused(f"cannot read {key}: {exc.message}") from None
        return str(rows[0]["version"]) if rows else ""

    async def _running(self, links: Links, key: InstanceKey) -> None:
        """Wait (up to ``settle``) for both threads to run after a START SLAVE."""
        deadline = time.monotonic() + self._settle
        while time.monotonic() < deadline:
            replication = await self._op.replication(links, key)
            if replication is None or (replication.io_running and replication.sql_running):
                return
            if replication.last_sql_errno:
                return  # stopped again: the answer shows it
            await asyncio.sleep(POLL)

    # --- stop-replica-nice ----------------------------------------------------------------

    async def stop_nice(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        replication = _replica(key, await self._op.replication(links, key))
        message = f"Replica stopped nicely: {key}"
        if not replication.io_active and not replication.sql_running:
            return Outcome(message, f"replication on {key} was already stopped")
        if not replication.sql_running and replication.last_sql_errno:
            raise OperationRefused(
                f"the SQL thread of {key} stopped with error {replication.last_sql_errno}: "
                f"{replication.last_sql_error}; it cannot apply its relay log (skip-query?)"
            )
        undo: list[str] = []
        if replication.io_active:
            await steps.send(key, STOP_IO_THREAD)
            undo.append(START_IO_THREAD)
            steps.undo_with(key, undo)
        if not replication.sql_running:
            await steps.send(key, START_SQL_THREAD)
            undo.insert(0, STOP_SQL_THREAD)
            steps.undo_with(key, undo)
        waited = (
            "not waiting: SQL_Delay" if replication.sql_delay else await self._applied(links, key)
        )
        await steps.send(key, STOP_REPLICA)
        return Outcome(message, f"stopped replication nicely on {key} ({waited})")

    async def _applied(self, links: Links, key: InstanceKey) -> str:
        """Wait for the SQL thread to apply everything received; what it applied, or StepFailed."""
        deadline = time.monotonic() + self._nice_wait
        while True:
            try:
                status = parse_replica_status(await links.rows(key, SHOW_ALL_REPLICAS_STATUS))
            except StatementFailed as exc:
                raise StepFailed(f"cannot read {key}: {exc.message}") from None
            if status is None:
                raise StepFailed(f"{key} is no longer a replica")
            check = applied_check(MARIADB, status)
            if check.progress is Progress.DONE:
                return check.detail
            if check.progress is Progress.FAILED:
                raise StepFailed(check.detail)
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"the SQL thread did not apply the relay log within {self._nice_wait:g}s "
                    f"({check.detail})"
                )
            await asyncio.sleep(POLL)

    # --- reset-replica --------------------------------------------------------------------

    async def reset(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        replication = _replica(key, await self._op.replication(links, key))
        stops, starts = thread_statements(replication)
        for sql in stops:
            await steps.send(key, sql)
        steps.undo_with(key, starts)
        await steps.send(key, RESET_REPLICA)
        return Outcome(
            f"Replica reset on {key}",
            f"replication reset on {key}; it replicated from {replication.master_text} "
            f"(gtid_slave_pos {replication.gtid_slave_pos or 'empty'}, "
            f"master_use_gtid {replication.gtid_mode or 'no'}, "
            f"executed up to {replication.exec_file}:{replication.exec_pos})",
        )

    # --- detach / reattach ----------------------------------------------------------------

    async def _coordinates(
        self, links: Links, key: InstanceKey, replication: Replication
    ) -> tuple[str, int] | None:
        """A file:pos replica's executed coordinates, read once it is stopped; None with GTID."""
        if uses_gtid(replication):
            return None
        stopped = await self._op.replication(links, key)
        if stopped is None or not stopped.exec_file:
            raise StepFailed(f"{key}: no executed coordinates to keep (file:pos replication)")
        return stopped.exec_file, stopped.exec_pos

    async def detach(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        replication = _replica(key, await self._op.replication(links, key))
        if replication.detached:
            raise OperationRefused(f"instance already detached: {key}")
        host = detached_host(replication.master_host)
        stops, starts = thread_statements(replication)
        for sql in stops:
            await steps.send(key, sql)
        steps.undo_with(key, starts)
        coordinates = await self._coordinates(links, key, replication)
        await steps.send(key, change_host_sql(host, replication.gtid_mode, coordinates))
        return Outcome(
            f"Replica detached: {key}",
            f"replica {key} detached from master {replication.master_text} into "
            f"{host}:{replication.master_port}; replication left stopped",
        )

    async def reattach(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        replication = _replica(key, await self._op.replication(links, key))
        if not replication.detached:
            raise OperationRefused(f"instance does not seem to be detached: {key}")
        host = reattached_host(replication.master_host)
        stops, _ = thread_statements(replication)
        for sql in stops:
            await steps.send(key, sql)
        coordinates = await self._coordinates(links, key, replication)
        await steps.send(key, change_host_sql(host, replication.gtid_mode, coordinates))
        back = change_host_sql(replication.master_host, replication.gtid_mode, coordinates)
        steps.undo_with(key, [STOP_REPLICA, back])
        await steps.send(key, START_REPLICA)
        await self._running(links, key)
        return Outcome(
            f"Replica reattached: {key}",
            f"replica {key} reattached to master {host}:{replication.master_port}",
        )

    # --- skip-query -----------------------------------------------------------------------

    async def skip(self, links: Links, key: InstanceKey, steps: Steps) -> Outcome:
        replication = await self._op.replication(links, key)
        version = await self._version(links, key)
        mysql_gtid = "mariadb" not in version.lower() and bool(
            replication and replication.gtid_mode not in {"", "no"}
        )
        why = skip_refusal(key, replication, mysql_gtid=mysql_gtid)
        if why is not None:
            raise OperationRefused(why)
        assert replication is not None
        await steps.send(key, SKIP_ONE)
        steps.undo_with(key, [SKIP_NONE])
        await steps.send(key, START_REPLICA)
        await self._running(links, key)
        after = await self._op.replication(links, key)
        moved = after.gtid_slave_pos if after is not None else ""
        return Outcome(
            f"Query skipped on {key}",
            f"skipped one transaction on {key} (error {replication.last_sql_errno}: "
            f"{replication.last_sql_error}); gtid_slave_pos {replication.gtid_slave_pos} "
            f"-> {moved}",
        )

    # --- delay-replication ----------------------------------------------------------------

    def delay(self, seconds: int) -> Body:
        async def body(links: Links, key: InstanceKey, steps: Steps) -> Outcome:
            replication = _replica(key, await self._op.replication(links, key))
            stops, starts = thread_statements(replication)
            for sql in stops:
                await steps.send(key, sql)
            steps.undo_with(key, starts)
            await steps.send(key, delay_sql(seconds))
            steps.undo_with(key, [delay_sql(replication.sql_delay), *starts])
            for sql in starts:
                await steps.send(key, sql)
            return Outcome(
                f"Replication delayed: {key}",
                f"set to {seconds} (was {replication.sql_delay}) on {key}",
                details=seconds,
            )

        return body

    # --- handlers -------------------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        op = self._op

        async def stop_nice(request: CommandRequest) -> CommandReply:
            return await op.run("stop-replica-nice", request, self.stop_nice)

        async def reset(request: CommandRequest) -> CommandReply:
            return await op.run("reset-replica", request, self.reset)

        async def detach(request: CommandRequest) -> CommandReply:
            return await op.run("detach-replica-master-host", request, self.detach)

        async def reattach(request: CommandRequest) -> CommandReply:
            return await op.run("reattach-replica-master-host", request, self.reattach)

        async def skip(request: CommandRequest) -> CommandReply:
            return await op.run("skip-query", request, self.skip)

        async def delay(request: CommandRequest) -> CommandReply:
            try:
                seconds = parse_seconds(request.arguments.get("seconds", ""))
            except ValueError as exc:
                raise OperationRefused(str(exc)) from None
            return await op.run("delay-replication", request, self.delay(seconds))

        return {
            "stop-replica-nice": stop_nice,
            "reset-replica": reset,
            "detach-replica-master-host": detach,
            "reattach-replica-master-host": reattach,
            "skip-query": skip,
            "delay-replication": delay,
        }
