"""``make-co-master`` (issue 6): the cluster master M starts replicating from its read-only
direct replica I, with MariaDB GTID, so that the two are co-masters (I stays read-only).

Checked first, changing nothing (``moves_many_rules.co_master_refusal``): I replicates from M
with GTID, is read-only, has ``log_bin`` and ``log_slave_updates``, is not delayed, replicates
and does not lag, holds no transaction M lacks, is not of a higher version; M replicates from
nobody (``"I is already co master"`` when M replicates from I). M needs replication
credentials: ``ReplicationCredentialsQuery`` run on I, or the user M still has configured;
otherwise refused.

Then on M, each right after ``guard()`` (``moves_many_rules.co_master_sql``): ``SET GLOBAL
gtid_slave_pos`` to I's ``gtid_binlog_pos``, ``CHANGE MASTER TO`` I with
``master_use_gtid=slave_pos``, ``START SLAVE``; verified within ``verify`` seconds. On failure M
is put back as it was: ``STOP SLAVE``, ``RESET SLAVE ALL``, its previous ``gtid_slave_pos``.
"""

from __future__ import annotations

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import instance_key
from orchestrator_recovery.operations.moves import Mover, read_server, shown
from orchestrator_recovery.operations.moves_many_rules import co_master_refusal, co_master_sql
from orchestrator_recovery.operations.moves_sql import Server
from orchestrator_recovery.operations.replication import replication_credentials
from orchestrator_recovery.sql import quote
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused, StepFailed
from orchestrator_shared.instance_key import InstanceKey


class CoMaster:
    def __init__(self, mover: Mover, *, credentials_query: str = "") -> None:
        self._mover = mover
        self._query = credentials_query

    async def _read_only(self, links: Links, key: InstanceKey) -> bool:
        try:
            rows = await links.rows(key, "SELECT @@global.read_only AS read_only")
        except StatementFailed as exc:
            raise OperationRefused(f"cannot read {key}: {exc.message}") from None
        return bool(rows) and str(rows[0].get("read_only")) in {"1", "ON"}

    async def _credentials(
        self, links: Links, key: InstanceKey, master: Server
    ) -> tuple[str, str] | None:
        """The user and password M will use (None: keep the ones M has configured)."""
        if self._query:
            return await replication_credentials(links, key, self._query)
        if master.replica is not None and master.replica.master_user:
            return None
        raise OperationRefused(
            f"{master.key} has no replication credentials and ReplicationCredentialsQuery is "
            f"not set: it could not replicate from {key}"
        )

    async def make(self, request: CommandRequest) -> CommandReply:
        key = instance_key(request.instance)
        mover = self._mover
        async with mover.links() as links:
            instance = await read_server(links, key)
            if instance.master is None:
                raise OperationRefused(f"{key} is not a replica")
            master = await read_server(links, instance.master)
            read_only = await self._read_only(links, key)
            why = co_master_refusal(instance, master, read_only=read_only, max_lag=mover.max_lag)
            if why is not None:
                raise OperationRefused(why)
            credentials = await self._credentials(links, key, master)
            start = (await read_server(links, key)).positions.binlog
            done: list[str] = []
            try:
                for sql in co_master_sql(key, start, credentials):
                    await mover.send(links, master.key, sql, done)
                why = await mover.following(links, master.key, key)
                if why is not None:
                    raise StepFailed(why)
            except LeaseLost as exc:
                if not done:
                    raise
                steps = " and ".join(shown(sql) for sql in done)
                text = f"{master.key}: {steps} done, then: {exc}; {master.key} left as it is"
                await mover.publish("make-co-master", request, key, text, ok=False)
                raise LeaseLost(text) from None
            except StepFailed as exc:
                text, lost = await self._restore(links, master, done, exc)
                await mover.publish("make-co-master", request, key, text, ok=False)
                raise (LeaseLost(text) if lost else OperationRefused(text)) from None
            details = await mover.details(links, key)
        text = (
            f"{key} made co-master of {master.key} ({master.key} replicates from it from {start})"
        )
        await mover.publish("make-co-master", request, key, text, ok=True)
        return CommandReply(
            ok=True,
            operation=request.operation,
            message=f"Instance made co-master: {key}",
            details=details,
        )

    async def _restore(
        self, links: Links, master: Server, done: list[str], failure: Exception
    ) -> tuple[str, bool]:
        """M back to replicating from nobody, with its previous ``gtid_slave_pos``."""
        head = f"making {master.key} replicate from its replica failed: {failure}"
        if not done:
            return head + "; nothing was changed", False
        steps: list[str] = []
        try:
            if len(done) > 1:  # CHANGE MASTER was done
                await self._mover.send(links, master.key, "STOP SLAVE", steps)
                await self._mover.send(links, master.key, "RESET SLAVE ALL", steps)
            previous = f"SET GLOBAL gtid_slave_pos = {quote(master.positions.applied)}"
            await self._mover.send(links, master.key, previous, steps)
        except (StepFailed, LeaseLost) as exc:
            text = (
                f"{head}; restoring {master.key} failed after {' and '.join(steps) or 'nothing'}"
                f": {exc}; {master.key} left as it is now"
            )
            return text, isinstance(exc, LeaseLost)
        return f"{head}; {master.key} restored (no replication, {previous})", False
