"""``purge-binary-logs`` (issue 6): ``PURGE BINARY LOGS TO <file>`` behind the lease guard.

``arguments``: ``logFile`` (a file of ``SHOW BINARY LOGS``, or ``latest`` for the current one),
``force`` (``"true"`` skips the replica check) and ``replicas`` (comma-separated ``host:port``:
the replicas topology-api knows of, so that one that is stopped, disconnected and therefore
missing from ``SHOW SLAVE HOSTS`` is checked too).

Unless forced, it refuses (changing nothing) when the file is not one of the instance's binary
logs, or when a replica still needs a log before it: a GTID replica's ``gtid_slave_pos`` must
have reached where the file begins (its ``Gtid_list`` event: it reconnects from what it
applied); any other replica's ``Relay_Master_Log_File`` (the master file its SQL thread is in)
must be the file or a later one, as orchestrator checks ``ExecBinlogCoordinates``. A replica that
cannot be read, or that does not name itself (no ``report_host``), refuses too: what it needs is
unknown.
The file must exist even when forced (MariaDB would fail on it).
"""

from __future__ import annotations

import asyncio
import time

from orchestrator_recovery.mysql import Links, StatementFailed
from orchestrator_recovery.operations.base import (
    Body,
    Operator,
    Outcome,
    Steps,
    instance_key,
)
from orchestrator_recovery.operations.control_sql import (
    SHOW_ALL_REPLICAS_STATUS,
    SHOW_BINARY_LOGS,
    SHOW_REPLICA_HOSTS,
    Replication,
    parse_binary_logs,
    parse_replica_hosts,
    parse_replication,
    purge_refusal,
    purge_sql,
)
from orchestrator_recovery.operations.errant_sql import (
    binlog_events_sql,
    gtid_list_of,
    list_position,
)
from orchestrator_recovery.ports import Handler
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import InvalidGtid, OperationRefused, StepFailed
from orchestrator_shared.gtid import MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey

PURGE_WAIT = 5.0  # seconds PURGE is sent again while the server keeps a log still in use


async def replica_needs(
    links: Links, key: InstanceKey, known: list[InstanceKey]
) -> dict[str, Replication | str]:
    """Each replica of ``key`` (connected ones from ``SHOW SLAVE HOSTS``, plus ``known``) with
    its replication, or why it cannot be told what it needs. A connected replica reads this
    instance's binary logs whatever name it gives its master; a stored one that now replicates
    from elsewhere (or not at all) needs nothing here."""
    try:
        named, unnamed = parse_replica_hosts(await links.rows(key, SHOW_REPLICA_HOSTS))
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read {key}: {exc.message}") from None
    needs: dict[str, Replication | str] = {}
    for replica in dict.fromkeys([*named, *known]):
        try:
            replication = parse_replication(await links.rows(replica, SHOW_ALL_REPLICAS_STATUS))
        except StatementFailed as exc:
            needs[str(replica)] = f"cannot read it: {exc.message}"
            continue
        if replication is not None and (replica in named or replication.master_text == str(key)):
            needs[str(replica)] = replication
    for server_id in unnamed:
        needs[f"server_id {server_id}"] = "it sets no report_host"
    return needs


async def _start_of(links: Links, key: InstanceKey, name: str) -> MariaGtidPosition | None:
    """Where binary log ``name`` begins (its Gtid_list event), None when unknown (MySQL)."""
    try:
        rows = await links.rows(key, binlog_events_sql(name, limit=5))
        found = gtid_list_of(rows)
        return None if found is None else list_position(found)
    except StatementFailed as exc:
        raise OperationRefused(f"cannot read binary log {name} of {key}: {exc.message}") from None
    except InvalidGtid:
        return None


async def _kept(links: Links, key: InstanceKey, logs: list[str], target: str) -> str | None:
    """What the server kept before ``target``, or None. MariaDB silently keeps a log still in
    use (a replica's dump thread reading it, or the storage engines' binlog checkpoint not past
    it yet); PURGE succeeds all the same."""
    try:
        warnings = await links.rows(key, "SHOW WARNINGS")
        left = parse_binary_logs(await links.rows(key, SHOW_BINARY_LOGS))
    except StatementFailed as exc:
        raise StepFailed(
            f"the binary logs of {key} could not be read back: {exc.message}"
        ) from None
    kept = [name for name in left if name in logs[: logs.index(target)]]
    if kept:
        said = "; ".join(str(row.get("Message", "")) for row in warnings) or "no warning"
        return f"the server kept {', '.join(kept)} for {PURGE_WAIT:g}s ({said}); try again later"
    return None


def _known(text: str) -> list[InstanceKey]:
    keys: list[InstanceKey] = []
    for part in text.split(","):
        if part.strip():
            keys.append(instance_key(part.strip(), "replica"))
    return keys


class BinaryLogs:
    def __init__(self, operator: Operator) -> None:
        self._op = operator

    def purge(self, log_file: str, *, force: bool, known: list[InstanceKey]) -> Body:
        async def body(links: Links, key: InstanceKey, steps: Steps) -> Outcome:
            try:
                logs = parse_binary_logs(await links.rows(key, SHOW_BINARY_LOGS))
            except StatementFailed as exc:
                raise OperationRefused(
                    f"cannot read the binary logs of {key}: {exc.message}"
                ) from None
            if not logs:
                raise OperationRefused(f"{key} has no binary log (log_bin is off)")
            target = logs[-1] if log_file == "latest" else log_file
            needs = {} if force else await replica_needs(links, key, known)
            start = None
            if target in logs and not force:
                start = await _start_of(links, key, target)
            why = purge_refusal(key, target, logs, needs, start=start)
            if why is not None and (not force or target not in logs):
                raise OperationRefused(why)
            deadline = time.monotonic() + PURGE_WAIT
            while True:
                await steps.send(key, purge_sql(target))
                why = await _kept(links, key, logs, target)
                if why is None:
                    break
                if time.monotonic() >= deadline:
                    raise StepFailed(why)
                await asyncio.sleep(0.5)
            purged = logs[: logs.index(target)]
            checked = (
                "forced, replicas not checked" if force else f"{len(needs)} replica(s) checked"
            )
            return Outcome(
                f"Binary logs purged on: {key}",
                f"purged binary logs on {key} up to {target} "
                f"({', '.join(purged) or 'none before it'}; {checked})",
            )

        return body

    def handlers(self) -> dict[str, Handler]:
        async def purge(request: CommandRequest) -> CommandReply:
            log_file = request.arguments.get("logFile", "").strip()
            if not log_file:
                raise OperationRefused("purge-binary-logs: expected log file name or 'latest'")
            force = request.arguments.get("force", "").strip().lower() == "true"
            known = _known(request.arguments.get("replicas", ""))
            body = self.purge(log_file, force=force, known=known)
            return await self._op.run("purge-binary-logs", request, body)

        return {"purge-binary-logs": purge}
