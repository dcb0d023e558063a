"""Planned master changes (issue 6): ``graceful-master-takeover`` and its ``-auto`` form.

``instance`` = the cluster's master M, ``destination`` = the designated replica D (optional).
Nothing changes until every check passed:

1. M is the master of a known cluster and answers; it and its direct replicas are probed
   afresh. D is the named replica, which must replicate directly from M; with none named, M's
   only direct replica, or (``-auto`` only) the best one by the failover rules
   (:func:`~orchestrator_shared.recovery.takeover.choose_takeover_successor`). D must break
   no promotion rule (errant GTIDs, delay, binary logs, version, ``must_not``, data center and
   region) and lag at most ``ReasonableMaintenanceReplicationLagSeconds``.
2. The demoted master will replicate from D: its replication user and password come from
   ``ReplicationCredentialsQuery`` (run on D). ``-auto`` refuses when there are none, since M
   could not start replicating.

Then, every statement right after ``guard()``:

3. M's other direct replicas are moved below D with GTID, all at once (the ``relocate``
   operation each: the 1236 check, verified); one that cannot move, unless downtimed, aborts
   the takeover.
4. ``PreGracefulTakeoverProcesses``; a failing hook aborts.
5. **The write-unavailable window** opens: M ``read_only=1`` and its client sessions killed
   (as a failover's fence: SUPER users are not stopped by read_only); M's position is read; D is
   given ``ReasonableMaintenanceReplicationLagSeconds`` to apply *exactly* everything M
   logged; D: ``STOP SLAVE``, ``RESET SLAVE ALL``, semi-sync master on if M had it,
   ``read_only=0``: the window closes. At once a signed ``MasterChanged`` tells topology-api
   (``Promoted``): ``/api/master`` names D from now on, not from the next snapshots.
6. M: ``CHANGE MASTER TO`` D with ``master_use_gtid=current_pos`` (and the credentials);
   ``-auto`` only: ``START SLAVE`` and a check that M replicates from D.
7. ``PostGracefulTakeoverProcesses``.

A failure in 3, 4 or 5 (before D is writable) is rolled back: D's replication from M
restored, M ``read_only=0`` again, the moved replicas moved back below M; the answer says what
failed and that the topology is as it was (or exactly what could not be put back). After D is
writable nothing is rolled back (writes may have reached D): a failure in 6 is reported with
the takeover as done. A lost lease sends nothing more; the error lists what was done.

Recovery events (``started``, ``promoted``, ``completed`` / ``failed``; analysis
``DeadMaster``, ``command`` = the operation) tell subscribers the master changed, as a
failover does; a takeover is planned, so it does not start the anti-flapping block.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.hooks import HookStage
from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.operations.base import instance_key
from orchestrator_recovery.operations.moves import shown
from orchestrator_recovery.operations.replication import replicating_from, replication_credentials
from orchestrator_recovery.operations.takeover_sql import (
    demoted_master_sql,
    not_applied,
    replication_tls,
)
from orchestrator_recovery.ports import Handler
from orchestrator_recovery.sql import (
    PROCESSLIST_SQL,
    Dialect,
    Progress,
    client_connection_ids,
    following_check,
    parse_positions,
    parse_replica_status,
)
from orchestrator_shared.analysis import Analysis, AnalysisCode
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.errors import LeaseLost, OperationRefused, StepFailed
from orchestrator_shared.events import RecoveryData, RecoveryPhase
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.recovery import PlanOptions
from orchestrator_shared.recovery.takeover import choose_takeover_successor
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot

STATEMENT_TIMEOUT = 10.0
VERIFY = 10.0  # seconds for the demoted master to replicate from D (-auto)
POLL = 0.005  # the catch-up is polled this often: it is inside the write-unavailable window
FOLLOW_POLL = 0.01  # the demoted master's replication is checked this often: the call waits


class Promoted(Protocol):
    """Told the moment the successor is writable (``MasterNotice.promoted``); never raises."""

    async def __call__(self, data: RecoveryData, *, demoted_replicates: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class TakeoverOptions:
    max_lag: int = 20  # ReasonableMaintenanceReplicationLagSeconds
    credentials_query: str = ""  # ReplicationCredentialsQuery
    statement_timeout: float = STATEMENT_TIMEOUT
    verify: float = VERIFY


@dataclass
class _Run:
    """One takeover as it goes: what was done, for the rollback and the report."""

    master: InstanceKey
    successor: InstanceKey
    dialect: Dialect
    done: list[str]
    moved: list[InstanceKey]
    successor_stopped: bool = False
    successor_reset: bool = False
    promoted: bool = False
    window_ms: float = 0.0
    tls: tuple[str, ...] = ()  # the successor's replication TLS options (CHANGE MASTER)

    def did(self, key: InstanceKey, sql: str) -> None:
        self.done.append(f"{key}: {sql}")


class Takeover:
    """Runs graceful takeovers for the active worker (one instance serves every handler)."""

    def __init__(
        self,
        *,
        access: MySQLAccess,
        guard: Guard,
        token: Callable[[], int],
        worker: RecoveryWorker,
        relocate: Handler,
        plan_options: PlanOptions,
        options: TakeoverOptions,
        worker_id: str,
        promoted: Promoted | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._access = access
        self._guard = guard
        self._token = token
        self._worker = worker
        self._relocate = relocate
        self._plan_options = plan_options
        self._options = options
        self._worker_id = worker_id
        self._notice = promoted
        self._clock = clock

    async def _promoted(self, data: RecoveryData, *, demoted_replicates: bool) -> None:
        if self._notice is not None:
            await self._notice(data, demoted_replicates=demoted_replicates)

    # --- choosing and checking ----------------------------------------------------------------
    async def _facts(self, master: InstanceKey) -> tuple[Analysis, Mapping[InstanceKey, Any]]:
        analysis = self._worker.analysis_of(master)
        if analysis is None or not analysis.is_master:
            raise OperationRefused(f"{master} is not the master of a known cluster")
        if analysis.is_co_master or analysis.master_key is not None:
            raise OperationRefused(f"{master} replicates from another server: not a lone master")
        await self._worker.verify(analysis)  # M and its replicas probed afresh
        snapshots = self._worker.snapshots
        snapshot = snapshots.get(master)
        if snapshot is None or not snapshot.probe.ok:
            why = snapshot.probe.error if snapshot is not None else "never seen"
            raise OperationRefused(f"cannot read the master {master}: {why}")
        fresh = self._worker.analysis_of(master) or analysis
        return fresh, snapshots

    def _choose(
        self,
        analysis: Analysis,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        requested: InstanceKey | None,
        *,
        auto: bool,
    ) -> InstanceKey:
        master = snapshots[analysis.key]
        direct = [
            snap
            for snap in snapshots.values()
            if snap.master_key == analysis.key and snap.instance_key != analysis.key
        ]
        if not direct:
            raise OperationRefused(f"GracefulMasterTakeover: {analysis.key} has no replicas")
        if requested is None and len(direct) > 1 and not auto:
            names = ", ".join(sorted(str(s.instance_key) for s in direct))
            raise OperationRefused(
                "GracefulMasterTakeover: target instance not indicated "
                f"({analysis.key} has {len(direct)} direct replicas: {names}; name one with -d, "
                "or use graceful-master-takeover-auto)"
            )
        if requested is None and len(direct) == 1:
            requested = direct[0].instance_key
        choice = choose_takeover_successor(
            master,
            direct,
            options=self._plan_options,
            candidates=self._worker.promotion_rules,
            requested=requested,
        )
        if choice.successor is None:
            raise OperationRefused(f"GracefulMasterTakeover: {choice.reason}")
        chosen = snapshots[choice.successor]
        channel = chosen.primary_channel
        lag = channel.seconds_behind_master if channel is not None else None
        if lag is None or lag > self._options.max_lag:
            shown = "unknown" if lag is None else f"{lag}s"
            raise OperationRefused(
                f"GracefulMasterTakeover: {choice.successor} lags {shown}, more than "
                f"ReasonableMaintenanceReplicationLagSeconds={self._options.max_lag}"
            )
        return choice.successor

    async def _credentials(self, links: Links, successor: InstanceKey) -> tuple[str, str] | None:
        query = self._options.credentials_query
        return await replication_credentials(links, successor, query) if query else None

    # --- the takeover ---------------------------------------------------------------------------
    async def take_over(self, request: CommandRequest, *, auto: bool) -> CommandReply:
        master = instance_key(request.instance)
        requested = (
            instance_key(request.destination, "destination") if request.destination else None
        )
        analysis, snapshots = await self._facts(master)
        successor = self._choose(analysis, snapshots, requested, auto=auto)
        flavor = snapshots[master].flavor
        dialect = Dialect(flavor if flavor is not Flavor.UNKNOWN else Flavor.MARIADB)
        siblings = sorted(
            snap.instance_key
            for snap in snapshots.values()
            if snap.master_key == master and snap.instance_key not in {master, successor}
        )
        async with Links(self._access, statement_timeout=self._options.statement_timeout) as links:
            credentials = await self._credentials(links, successor)
            if credentials is None and auto and not await self._has_credentials(links, master):
                raise OperationRefused(
                    f"GracefulMasterTakeover: the demoted master {master} has no replication "
                    "credentials and ReplicationCredentialsQuery is not set, so it could not "
                    "start replicating (set it, or use graceful-master-takeover and set them "
                    "by hand before start-replica)"
                )
            data = RecoveryData(
                recovery_id=str(uuid.uuid4()),
                cluster=analysis.cluster_name,
                cluster_alias=analysis.cluster_alias,
                analysis=AnalysisCode.DEAD_MASTER.value,
                failed=str(master),
                successor=str(successor),
                fencing_token=self._token(),
                worker=self._worker_id,
                started_at=self._clock(),
                forced=True,
                requested_by=request.requested_by,
                command=request.operation,
            )
            hook_analysis = replace(analysis, code=AnalysisCode.DEAD_MASTER)
            run = _Run(master, successor, dialect, [], [])
            # read before the successor's RESET SLAVE ALL forgets them
            run.tls = await self._replication_tls(links, run)
            with self._worker.holding(analysis.cluster_name), self._worker.promoting(successor):
                await self._worker.announce(RecoveryPhase.STARTED, data)
                try:
                    await self._move_siblings(request, run, siblings, snapshots)
                    await self._worker.run_hook(
                        HookStage.PRE_GRACEFUL_TAKEOVER, hook_analysis, data
                    )
                    await self._switch(links, run, semi_sync=snapshots[master].semi_sync)
                except LeaseLost as exc:
                    text = f"graceful takeover lost its lease: {exc}; done: " + (
                        "; ".join(run.done) or "nothing"
                    )
                    await self._end(RecoveryPhase.FAILED, data, reason=text)
                    raise LeaseLost(text) from None
                except (StepFailed, OperationRefused, StatementFailed) as exc:
                    text = await self._roll_back(request, links, run, exc)
                    await self._end(RecoveryPhase.FAILED, data, reason=text)
                    raise OperationRefused(text) from None
                # the API names the new master now, not when discovery probes it again
                await self._promoted(data, demoted_replicates=True)
                data = data.model_copy(update={"repointed": tuple(str(k) for k in run.moved)})
                await self._worker.took_over(data)
                await self._worker.announce(RecoveryPhase.PROMOTED, data)
                note = await self._demote(links, run, credentials, auto=auto)
                ended = await self._end(RecoveryPhase.COMPLETED, data, reason=note)
            await self._worker.refresh_involved(ended)
            await self._worker.run_hook(HookStage.POST_GRACEFUL_TAKEOVER, hook_analysis, ended)
        details = {
            "Id": data.recovery_id,
            "SuccessorKey": {"Hostname": successor.host, "Port": successor.port},
            "LostReplicas": [],
            "FencingToken": data.fencing_token,
            "WriteUnavailableMillis": round(run.window_ms, 1),
            "DemotedMasterReplicating": auto and not note,
            "Notes": note,
        }
        message = f"{request.operation}: successor promoted"
        return CommandReply(ok=True, operation=request.operation, message=message, details=details)

    async def _replication_tls(self, links: Links, run: _Run) -> tuple[str, ...]:
        """The successor's TLS options of its replication from the master (for step 6)."""
        try:
            rows = await links.rows(run.successor, run.dialect.replica_status_sql)
        except StatementFailed:
            return ()
        return replication_tls(run.dialect, rows, run.master)

    async def _has_credentials(self, links: Links, key: InstanceKey) -> bool:
        try:
            rows = await links.rows(key, Dialect(Flavor.MARIADB).replica_status_sql)
        except StatementFailed:
            return False
        return any(str(row.get("Master_User") or "") for row in rows)

    async def _move(self, request: CommandRequest, key: InstanceKey, below: InstanceKey) -> None:
        """``relocate`` ``key`` below ``below`` (all its checks; restored on failure)."""
        await self._relocate(
            CommandRequest(
                operation="relocate",
                instance=str(key),
                destination=str(below),
                cluster=request.cluster,
                requested_by=request.requested_by,
            )
        )

    async def _send(self, links: Links, run: _Run, key: InstanceKey, sql: str) -> None:
        # right after the guard, inside the lease: a lost lease sends nothing
        await links.fenced(key, sql, self._guard)
        run.did(key, sql)

    async def _move_siblings(
        self,
        request: CommandRequest,
        run: _Run,
        siblings: list[InstanceKey],
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
    ) -> None:
        downtimed = self._worker.downtimed
        # concurrently: each move reads, checks and verifies its own replica; D is only read
        outcomes = await asyncio.gather(
            *(self._move(request, key, run.successor) for key in siblings),
            return_exceptions=True,
        )
        refused: list[str] = []
        unexpected: list[BaseException] = []
        for key, outcome in zip(siblings, outcomes, strict=True):
            if outcome is None:
                run.moved.append(key)  # recorded before anything is raised: the rollback
                run.did(key, f"moved below {run.successor}")
            elif isinstance(outcome, OperationRefused):
                if key not in downtimed:  # a downtimed one stays below M, which follows D
                    refused.append(f"cannot move {key} below {run.successor}: {outcome}")
            else:
                unexpected.append(outcome)
        if unexpected:
            raise unexpected[0]  # a lost lease, a bug: as a serial move would have raised it
        if refused:
            raise StepFailed("; ".join(refused))

    async def _switch(self, links: Links, run: _Run, *, semi_sync: Any) -> None:
        """Step 5: the write-unavailable window, as short as the servers allow."""
        dialect, master, successor = run.dialect, run.master, run.successor
        await links.connect(successor)  # both connections open before the window
        opened = time.monotonic()
        await self._send(links, run, master, dialect.set_read_only_sql)
        # Sessions of users read_only does not stop (SUPER, READ ONLY ADMIN) and open
        # transactions are cut off, as a failover's fence does: after the position is read,
        # nothing more may be written on the old master.
        for connection_id in client_connection_ids(await links.rows(master, PROCESSLIST_SQL)):
            with contextlib.suppress(StatementFailed):  # gone already
                await self._send(links, run, master, Dialect.kill_sql(connection_id))
        position = parse_positions(await links.rows(master, dialect.positions_sql))
        await self._wait_applied(links, run, position)
        await self._send(links, run, successor, dialect.stop_replication_sql)
        run.successor_stopped = True
        await self._send(links, run, successor, dialect.reset_replication_sql)
        run.successor_reset = True
        if semi_sync.master_enabled:
            await self._send(links, run, successor, dialect.semi_sync_master_on_sql)
        await self._send(links, run, successor, dialect.set_writable_sql)
        run.promoted = True
        run.window_ms = (time.monotonic() - opened) * 1000

    async def _wait_applied(self, links: Links, run: _Run, position: Any) -> None:
        dialect, successor = run.dialect, run.successor
        deadline = time.monotonic() + self._options.max_lag
        polls = 0
        while True:
            mine = parse_positions(await links.rows(successor, dialect.positions_sql))
            why = not_applied(dialect, position, mine)
            if why is None:
                return
            polls += 1
            if polls % 50 == 0:  # now and then: is it still replicating at all?
                status = parse_replica_status(
                    await links.rows(successor, dialect.replica_status_sql)
                )
                check = following_check(status, run.master)
                if check.progress is Progress.FAILED:
                    raise StepFailed(f"{successor} stopped replicating: {check.detail}")
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{successor} did not apply everything {run.master} logged within "
                    f"{self._options.max_lag}s (ReasonableMaintenanceReplicationLagSeconds): {why}"
                )
            await asyncio.sleep(POLL)

    async def _demote(
        self, links: Links, run: _Run, credentials: tuple[str, str] | None, *, auto: bool
    ) -> str:
        """Step 6; '' when it all went, else what did not (the takeover itself stands)."""
        user, password = credentials if credentials is not None else (None, None)
        sql = demoted_master_sql(
            run.dialect, run.successor, user=user, password=password, tls=run.tls
        )
        try:
            await self._send(links, run, run.master, sql)
            if not auto:
                return ""
            await self._send(links, run, run.master, run.dialect.start_replication_sql)
            why = await self._following(links, run.master, run.successor)
        except StatementFailed as exc:
            why = f"{shown(exc.statement)}: {exc.message}"
        except LeaseLost as exc:
            why = f"lease lost: {exc}"
        if why is None:
            return ""
        return f"{run.successor} promoted, but the demoted master {run.master}: {why}"

    async def _following(self, links: Links, key: InstanceKey, master: InstanceKey) -> str | None:
        return await replicating_from(
            links, key, master, within=self._options.verify, poll=FOLLOW_POLL
        )

    async def _roll_back(
        self, request: CommandRequest, links: Links, run: _Run, failure: Exception
    ) -> str:
        """Put things back as they were before the takeover; one line saying what happened."""
        head = f"GracefulMasterTakeover failed: {failure}"
        if not run.done:
            return head + "; nothing was changed"
        problems: list[str] = []
        dialect = run.dialect
        try:
            if run.successor_reset:
                restore = dialect.change_master_sql(run.master, extra=run.tls)
                await self._send(links, run, run.successor, restore)
            if run.successor_stopped:
                await self._send(links, run, run.successor, dialect.start_replication_sql)
                why = await self._following(links, run.successor, run.master)
                if why is not None:
                    problems.append(f"{run.successor} does not replicate from {run.master}: {why}")
            if any(step.startswith(f"{run.master}: ") for step in run.done):
                await self._send(links, run, run.master, dialect.set_writable_sql)
        except (StatementFailed, LeaseLost) as exc:
            problems.append(f"restoring {run.master} / {run.successor} failed: {exc}")
        for key in reversed(run.moved):
            try:
                await self._move(request, key, run.master)
            except (OperationRefused, LeaseLost) as exc:
                problems.append(f"{key} stays below {run.successor}: {exc}")
        if problems:
            return f"{head}; rolled back in part: " + "; ".join(problems)
        return f"{head}; rolled back: {run.master} is the writable master again" + (
            f", {', '.join(map(str, run.moved))} back below it" if run.moved else ""
        )

    async def _end(self, phase: RecoveryPhase, data: RecoveryData, *, reason: str) -> RecoveryData:
        ended = data.model_copy(update={"ended_at": self._clock(), "reason": reason})
        await self._worker.announce(phase, ended)
        return ended

    # --- handlers -----------------------------------------------------------------------------
    def handlers(self) -> dict[str, Handler]:
        async def graceful(request: CommandRequest) -> CommandReply:
            return await self.take_over(request, auto=False)

        async def graceful_auto(request: CommandRequest) -> CommandReply:
            return await self.take_over(request, auto=True)

        return {
            "graceful-master-takeover": graceful,
            "graceful-master-takeover-auto": graceful_auto,
        }
