"""``enable-gtid`` and ``disable-gtid`` (issue 10): switch a replica between GTID and file:pos
replication, keeping its master and the state of its threads.

Through :class:`~orchestrator_recovery.operations.base.Operator` (guard before each statement,
undo on a later failure, one audit entry). Each:

1. reads the replica and refuses, changing nothing (:mod:`.operations_gtid_sql`): not a
   replica, no master it can reach, already in the asked mode (orchestrator's "already uses
   GTID" / "is not using GTID"), MySQL without ``gtid_mode=ON`` (enable);
2. MariaDB: asks the master where the replica's executed coordinates are in GTID terms
   (``BINLOG_GTID_POS``) and refuses when that is not the replica's ``gtid_slave_pos`` (it would
   skip or repeat transactions); while the SQL thread runs the two are read again for up to
   ``settle`` seconds before refusing, as they move;
3. stops the threads that run, reads the replica again and repeats the check of 2 exactly (a
   difference now: the threads are started again and the operation refused);
4. ``enable-gtid``: ``CHANGE MASTER TO master_use_gtid=slave_pos``; ``disable-gtid``:
   ``CHANGE MASTER TO master_use_gtid=no, master_log_file=F, master_log_pos=P`` at the
   coordinates just read, so nothing is skipped or applied twice (MySQL: ``SOURCE_AUTO_POSITION``
   1 / 0 with ``SOURCE_LOG_FILE``/``SOURCE_LOG_POS``);
5. starts the threads that ran; when both ran, verifies within ``verify`` seconds that it
   replicates from its master again, in the new mode; otherwise the mode is switched back (and
   the threads restarted) and the operation refused, saying so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import Operator, Outcome, Steps, key_json
from orchestrator_recovery.operations.gtid_sql import (
    SELECT_GTID_MODE,
    SELECT_VERSION,
    binlog_gtid_pos_sql,
    disable_refusal,
    enable_refusal,
    enable_sql,
    file_pos_sql,
    gtid_fields,
    gtid_sql,
    parse_binlog_gtid_pos,
    parse_gtid_mode,
    position_mismatch,
    thread_statements,
)
from orchestrator_recovery.operations.moves_sql import flavor_dialect
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.sql import (
    Dialect,
    Progress,
    ReplicaStatus,
    following_check,
    parse_replica_status,
)
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import OperationRefused, StepFailed
from orchestrator_shared.instance_key import InstanceKey

SETTLE = 2.0  # seconds a running replica's two positions are given to agree before refusing
VERIFY = 10.0  # seconds for the switched replica to replicate from its master again
POLL = 0.1
# what a refused switch suggests: a file:pos replica that replicates has MariaDB record in
# gtid_slave_pos where it starts; a GTID replica knows its coordinates once it applied something
ENABLE_ADVICE = (
    "start its replication by file:pos (MariaDB then records in gtid_slave_pos where it is), "
    "or set gtid_slave_pos to where it is, then retry"
)
DISABLE_ADVICE = "retry once it has applied a new transaction from its master"


class _MasterUnanswered(Exception):
    """The replica's master could not say where the replica's coordinates are."""


@dataclass(frozen=True, slots=True)
class _Replica:
    """The replica as read: its flavor, its default connection, MySQL's gtid_mode."""

    dialect: Dialect
    status: ReplicaStatus | None
    rows: Sequence[Mapping[str, Any]]
    gtid_mode: str = ""

    @property
    def using(self) -> str:
        """MariaDB's Using_Gtid, lowercased (``slave_pos``, ``current_pos``, ``no``)."""
        return str(gtid_fields(self.rows)["UsingGtid"]).lower()


class GtidModes:
    """The two handlers; one instance serves both."""

    def __init__(
        self,
        operator: Operator,
        *,
        settle: float = SETTLE,
        verify: float = VERIFY,
        poll: float = POLL,
    ) -> None:
        self._op = operator
        self._settle = settle
        self._verify = verify
        self._poll = poll

    # --- reading --------------------------------------------------------------------------

    async def _read(self, links: Links, key: InstanceKey) -> _Replica:
        """The replica before anything changed; OperationRefused when it cannot be read."""
        try:
            dialect = flavor_dialect(await links.rows(key, SELECT_VERSION))
            rows = list(await links.rows(key, dialect.replica_status_sql))
            mode = (
                ""
                if dialect.is_mariadb
                else parse_gtid_mode(await links.rows(key, SELECT_GTID_MODE))
            )
        except StatementFailed as exc:
            raise OperationRefused(f"cannot read {key}: {exc.message}") from None
        return _Replica(dialect, parse_replica_status(rows), rows, mode)

    async def _again(self, links: Links, key: InstanceKey, dialect: Dialect) -> _Replica:
        """The replica once something changed; StepFailed (undone) when it cannot be read."""
        try:
            rows = list(await links.rows(key, dialect.replica_status_sql))
        except StatementFailed as exc:
            raise StepFailed(f"cannot read {key}: {exc.message}") from None
        status = parse_replica_status(rows)
        if status is None:
            raise StepFailed(f"{key} is no longer a replica")
        return _Replica(dialect, status, rows)

    async def _mismatch(self, links: Links, key: InstanceKey, status: ReplicaStatus) -> str | None:
        """MariaDB: why the replica's coordinates and gtid_slave_pos disagree, or None;
        :class:`_MasterUnanswered` when its master cannot tell."""
        assert status.master is not None
        file, position = status.exec_position
        try:
            answer = await links.rows(status.master, binlog_gtid_pos_sql(file, position))
        except StatementFailed as exc:
            raise _MasterUnanswered(
                f"cannot ask {key}'s master {status.master} where {file}:{position} is "
                f"({exc.message}); the switch is checked there, so it is not done without it"
            ) from None
        return position_mismatch(key, status.master, status, parse_binlog_gtid_pos(answer))

    async def _agreeing(
        self, links: Links, key: InstanceKey, replica: _Replica, *, advice: str
    ) -> None:
        """Step 2: refuse (nothing changed) unless the two positions agree."""
        if not replica.dialect.is_mariadb:
            return
        assert replica.status is not None
        deadline = time.monotonic() + self._settle
        status = replica.status
        while True:
            try:
                why = await self._mismatch(links, key, status)
            except _MasterUnanswered as exc:
                raise OperationRefused(str(exc)) from None
            if why is None:
                return
            if not status.is_sql_running or time.monotonic() >= deadline:
                raise OperationRefused(
                    f"{why}; switching now would skip or repeat transactions: {advice}"
                )
            await asyncio.sleep(self._poll)
            again = parse_replica_status(await self._rows(links, key, replica.dialect))
            if again is None:
                raise OperationRefused(f"{key} is no longer a replica")
            status = again

    async def _rows(
        self, links: Links, key: InstanceKey, dialect: Dialect
    ) -> Iterable[Mapping[str, Any]]:
        try:
            return await links.rows(key, dialect.replica_status_sql)
        except StatementFailed as exc:
            raise OperationRefused(f"cannot read {key}: {exc.message}") from None

    async def _replicating(
        self, links: Links, key: InstanceKey, dialect: Dialect, master: InstanceKey, *, gtid: bool
    ) -> str | None:
        """None once ``key`` replicates from ``master`` in the asked mode; else why not."""
        deadline = time.monotonic() + self._verify
        why = "not read"
        while time.monotonic() < deadline:
            replica = await self._again(links, key, dialect)
            assert replica.status is not None
            check = following_check(replica.status, master)
            if check.progress is Progress.FAILED:
                return check.detail
            if replica.status.using_gtid is not gtid:
                return f"{key} still {'does not use' if gtid else 'uses'} GTID"
            if check.progress is Progress.DONE:
                return None
            why = check.detail
            await asyncio.sleep(self._poll)
        return f"not replicating from {master} within {self._verify:g}s: {why}"

    # --- the switch -----------------------------------------------------------------------

    async def _switch(
        self,
        links: Links,
        key: InstanceKey,
        steps: Steps,
        replica: _Replica,
        *,
        to_gtid: bool,
    ) -> tuple[str, str]:
        """Steps 3 to 5; the statement that switched, and the one that would switch back."""
        dialect, status = replica.dialect, replica.status
        assert status is not None
        assert status.master is not None
        stops, starts = thread_statements(dialect, status)
        for sql in stops:
            await steps.send(key, sql)
        steps.undo_with(key, starts)
        stopped = await self._again(links, key, dialect)
        assert stopped.status is not None
        if dialect.is_mariadb:
            try:
                why = await self._mismatch(links, key, stopped.status)
            except _MasterUnanswered as exc:
                raise StepFailed(str(exc)) from None
            if why is not None:
                raise StepFailed(why)
        file, position = stopped.status.exec_position
        if not file:
            raise StepFailed(f"{key} has no executed coordinates (Relay_Master_Log_File is empty)")
        if to_gtid:
            switch, back = enable_sql(dialect), file_pos_sql(dialect, file, position)
        else:
            mode = replica.using if replica.using in ("slave_pos", "current_pos") else "slave_pos"
            switch, back = file_pos_sql(dialect, file, position), gtid_sql(dialect, mode)
        await steps.send(key, switch)
        # undoing switches back; with threads to start, it first stops what may have started
        steps.undo_with(key, [dialect.stop_replication_sql, back, *starts] if starts else [back])
        for sql in starts:
            await steps.send(key, sql)
        if status.is_io_running and status.is_sql_running:
            why = await self._replicating(links, key, dialect, status.master, gtid=to_gtid)
        else:
            after = await self._again(links, key, dialect)
            assert after.status is not None
            why = None if after.status.using_gtid is to_gtid else f"{key}: the mode did not change"
        if why is not None:
            raise StepFailed(why)
        return switch, f"{file}:{position}"

    async def _details(self, links: Links, key: InstanceKey, dialect: Dialect) -> dict[str, Any]:
        """The instance as read back: the GTID fields, and (MariaDB) the control fields."""
        try:
            rows = await links.rows(key, dialect.replica_status_sql)
        except StatementFailed as exc:
            raise OperationRefused(f"done on {key}, but it could not be read back: {exc}") from None
        if not dialect.is_mariadb:
            return {"Key": key_json(key), **gtid_fields(rows)}
        return {**await self._op.details(links, key), **gtid_fields(rows)}

    async def switch(
        self, links: Links, key: InstanceKey, steps: Steps, *, to_gtid: bool
    ) -> Outcome:
        """``enable-gtid`` (``to_gtid``) or ``disable-gtid``: steps 1 to 5."""
        replica = await self._read(links, key)
        if to_gtid:
            why = enable_refusal(key, replica.status, replica.dialect, replica.gtid_mode)
        else:
            why = disable_refusal(key, replica.status)
        if why is not None:
            raise OperationRefused(why)
        await self._agreeing(
            links, key, replica, advice=ENABLE_ADVICE if to_gtid else DISABLE_ADVICE
        )
        switch, at = await self._switch(links, key, steps, replica, to_gtid=to_gtid)
        assert replica.status is not None
        done = "Enabled" if to_gtid else "Disabled"
        before = replica.status.gtid_slave_pos or replica.status.executed_gtid_set or "empty"
        return Outcome(
            f"{done} GTID on {key}",  # orchestrator's message
            f"{done.lower()} GTID on {key}: {switch}; it had executed up to {at} of "
            f"{replica.status.master} (GTID position {before})",
            details=await self._details(links, key, replica.dialect),
        )

    def handlers(self) -> dict[str, Handler]:
        op = self._op

        async def enable(request: CommandRequest) -> CommandReply:
            return await op.run("enable-gtid", request, partial(self.switch, to_gtid=True))

        async def disable(request: CommandRequest) -> CommandReply:
            return await op.run("disable-gtid", request, partial(self.switch, to_gtid=False))

        return {"enable-gtid": enable, "disable-gtid": disable}
