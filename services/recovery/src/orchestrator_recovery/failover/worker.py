"""The active recovery worker's loop: analyse, verify, plan, execute, tell.

Only the leader runs :meth:`RecoveryWorker.lead` (the election cancels it the moment leadership
ends). One pass of the loop:

1. wait for a change of the fleet (a snapshot, an ``unreachable`` event) or ``tick``;
2. analyse the fleet with the shared analysis function and publish each cluster's problems
   when they changed (``orchestrator.v1.analysis.<cluster>``;
   :mod:`~orchestrator_recovery.failover.analysis_events`);
3. for an actionable failure with no recovery running in its cluster, start one (a task per
   cluster, so a slow recovery never delays another cluster's).

A recovery (``RecoveryWorker.recover``) is carried through by
:class:`~orchestrator_recovery.failover.recovering.Recoveries` (verify, gates, plan, execute,
tell; its gates are :mod:`~orchestrator_recovery.failover.gates`), whose entry points the
worker hands out as its own. Between passes the loop also reads what operators registered in
etcd (downtime, promotion rules) and makes a returning old master read_only again
(:mod:`~orchestrator_recovery.failover.returning`).

One bug never stops all failover: an unexpected exception in a pass is caught per cluster (the
analysis, its event, its recovery each on their own), logged at ERROR with the cluster, counted
(:attr:`RecoveryWorker.internal_errors`, and an ``internal-error`` audit entry at most every
10 minutes per cluster), and the loop goes on with the other clusters. When analysing the whole
fleet fails, each cluster (instances linked by replication) is analysed alone, so a snapshot that
trips a bug costs only its own cluster. A standby taking over reads the same snapshots and
behaves the same: it skips the failing cluster instead of crashing.

Instances matching ``RecoveryIgnoreHostnameFilters`` get no analysis here (so no event and no
recovery); :meth:`RecoveryWorker.analysis_of`, which operations use, still sees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

from orchestrator_adapters.ports import Guard
from orchestrator_recovery.failover.analysis_events import AnalysisPublishing
from orchestrator_recovery.failover.heartbeat import ReplicaHeartbeat
from orchestrator_recovery.failover.recovering import Recoveries
from orchestrator_recovery.failover.returning import ReturningMasters, back_in_service
from orchestrator_recovery.fleet import FleetState
from orchestrator_recovery.ports import (
    Executor,
    Hooks,
    Outcome,
    Planner,
    Probe,
    Publisher,
    StandbyFenceLinks,
    WorkerOptions,
)
from orchestrator_shared.analysis import (
    Analysis,
    AnalysisCode,
    CoordinatesSeen,
    analyze,
    track_binlog_coordinates,
    track_galera_desync,
)
from orchestrator_shared.errors import LeaseLost, OperationRefused, OrchestratorError
from orchestrator_shared.etcd.recovery import OperatorState, RecoveryControl
from orchestrator_shared.events import (
    AuditEvent,
    RecoveryData,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import matching_hostname_filter
from orchestrator_shared.recovery.galera import galera_peers
from orchestrator_shared.snapshot import InstanceSnapshot, ProbeFacts

__all__ = ["RecoveryWorker"]

log = logging.getLogger(__name__)

INTERNAL_ERROR_AUDIT_SECONDS = 600.0

REVERIFY_INTERVAL = 0.2
"""Between two verifications of a master that does not answer us while its replicas still say
they replicate from it (``UnreachableMaster``): a hung master's replicas notice within their
``slave_net_timeout``, and the failover should follow within a fraction of a second."""
REVERIFY_FIRST_INTERVAL = 0.02
"""The first wait before verifying again, doubled up to :data:`REVERIFY_INTERVAL`: a killed
master's replicas see its sockets close within milliseconds, so a verification that ran just
before they did is repeated at once rather than 200 ms later."""
REVERIFY_MAX_WINDOW = 5.0
"""The longest a suspect is verified again (its replicas' ``slave_net_timeout`` + 1 s, at most
this): past it the recovery ends unconfirmed, and the fleet's snapshots take over (the
analysis starts a recovery once the replicas' own snapshots say they lost the master). With
the managed heartbeat the window is 2 s; replicas on MariaDB's default 60 s are not waited for
here (that would hold the cluster's operations for a minute)."""
VERIFY_MASTER_SECONDS = 0.25
"""How long the suspected instance itself gets to answer a verification. Discovery already
waited ``MasterLivenessTimeoutSeconds`` for it; waiting the full probe deadline again would
only delay the replicas' verdict, which decides (a slow master the replicas still hear from is
no failure)."""
FENCE_ON_WAKE_WINDOW = 600.0
"""How long after a hung master's failover it is watched so that the moment it answers again
it is made read_only (then the periodic fencing of returning masters goes on)."""
FENCE_ON_WAKE_PAUSE = 0.05
"""Between two attempts to reach a hung old master (an attempt itself waits up to a
statement's bound for the connection)."""


class RecoveryWorker:
    def __init__(
        self,
        options: WorkerOptions,
        state: FleetState,
        *,
        probe: Probe,
        publisher: Publisher,
        control: RecoveryControl,
        planner: Planner,
        executor: Executor,
        refresh: Callable[[Iterable[InstanceKey]], Awaitable[None]] | None = None,
        hooks: Hooks | None = None,
        operator_state: OperatorState | None = None,
        heartbeat: ReplicaHeartbeat | None = None,
        standby_fence: StandbyFenceLinks | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._heartbeat = heartbeat
        self._standby_fence = standby_fence
        self._executor = executor
        # fence-on-wake watches of hung old masters (cancelled with the leadership)
        self._wake_fences: dict[InstanceKey, asyncio.Task[None]] = {}
        # suspects whose last verification probe got no answer in time (they hang, rather than
        # refuse): discovery's own snapshot may say otherwise (a handshake cut by its timeout
        # reads as "lost connection"), so the worker remembers what it saw itself
        self._hung: set[InstanceKey] = set()
        self._operator_state = operator_state
        # what operators registered (downtime: key -> end; promotion rules), refreshed by the
        # leader's loop
        self._downtimed: dict[InstanceKey, datetime] = {}
        self._candidates: dict[InstanceKey, PromotionRule] = {}
        self._clock = clock
        self._options = options
        self._state = state
        self._probe = probe
        self._publisher = publisher
        self._control = control
        self._running: dict[str, asyncio.Task[Outcome | None]] = {}
        # since when each instance's binlog coordinates stayed the same (LockedSemiSyncMaster)
        self._binlog_history: dict[InstanceKey, CoordinatesSeen] = {}
        # since when each Galera node has been desynced (GaleraNodeDesyncedTooLong)
        self._desynced_since: dict[InstanceKey, datetime] = {}
        self.internal_errors: Counter[str] = Counter()
        """Unexpected exceptions caught in the leader's loop, by cluster (``""``: not one
        cluster's)."""
        # when each cluster's last internal error was audited (monotonic; see _internal_error)
        self._audited_error: dict[str, float] = {}
        self._audits: set[asyncio.Future[object]] = set()
        returning = ReturningMasters(
            state,
            probe=probe,
            executor=executor,
            publisher=publisher,
            control=control,
            worker_id=options.worker_id,
            clock=clock,
            isolated=self._isolated,
        )
        recoveries = Recoveries(
            options,
            state,
            verify=self.verify_confirmed,
            candidates=lambda: self._candidates,
            publisher=publisher,
            control=control,
            planner=planner,
            executor=executor,
            refresh=refresh,
            hooks=hooks,
            clock=clock,
            after_failover=lambda data, guard: self.fence_on_wake(
                data.failed, data.successor, guard
            ),
            watch_return=returning.watch,
        )
        # One recovery is carried through by Recoveries; its entry points are the worker's own
        # (the loop and the operations call them on the worker).
        self.recover = recoveries.recover
        """Verify, gate, plan and execute one recovery; None when the failure is not confirmed
        (:meth:`Recoveries.recover
        <orchestrator_recovery.failover.recovering.Recoveries.recover>`)."""
        self.recoverable = recoveries.recoverable
        """Whether this worker recovers an analysis (:meth:`Recoveries.recoverable`)."""
        self.announce = recoveries.announce
        self.run_hook = recoveries.run_hook
        self.refresh_involved = recoveries.refresh_involved
        self.aftermath = recoveries.aftermath
        """The background work of completed recoveries (postponed and lost replicas)."""
        self._returning = returning
        self.keep_demoted_fenced = returning.keep_fenced
        """Fence the returning old masters (:meth:`ReturningMasters.keep_fenced
        <orchestrator_recovery.failover.returning.ReturningMasters.keep_fenced>`)."""
        self.promoting = returning.promoting
        """While a planned promotion makes a key the master, it is not fenced as a returning
        old master (:meth:`ReturningMasters.promoting`)."""
        self._publish_changes = AnalysisPublishing(
            publisher, clock=clock, isolated=self._isolated
        ).publish_changes

    # --- what operations (takeovers) use ---------------------------------------------------
    @property
    def snapshots(self) -> Mapping[InstanceKey, InstanceSnapshot]:
        return self._state.snapshots

    @property
    def promotion_rules(self) -> Mapping[InstanceKey, PromotionRule]:
        """Registered promotion rules (``register-candidate``), as last read from etcd."""
        return self._candidates

    @property
    def downtimed(self) -> Mapping[InstanceKey, datetime]:
        return self._downtimed

    def analysis_of(self, key: InstanceKey) -> Analysis | None:
        """``key``'s analysis now, problem or not (None: not known). Operations ask this, so
        ``RecoveryIgnoreHostnameFilters`` does not hide anything here."""
        for analysis in self.analyse(everything=True, for_recovery=False):
            if analysis.key == key:
                return analysis
        return None

    def ignoring(self, key: InstanceKey) -> str | None:
        """The ``RecoveryIgnoreHostnameFilters`` pattern that takes ``key`` out of recovery, if
        one does."""
        filters = self._options.analysis.recovery_ignore_hostname_filters
        return matching_hostname_filter(filters, key.host)

    @contextlib.contextmanager
    def holding(self, cluster: str) -> Iterator[None]:
        """Run an operation on ``cluster`` as its recovery: refused while a recovery of the
        cluster runs, and no automated recovery of it starts until the operation ends."""
        running = self._running.get(cluster)
        if running is not None and not running.done():
            raise OperationRefused(f"a recovery of {cluster} is running; try again when it ends")
        task = cast("asyncio.Task[Outcome | None]", asyncio.current_task())
        self._running[cluster] = task
        try:
            yield
        finally:
            if self._running.get(cluster) is task:
                del self._running[cluster]

    # --- the leader's loop ------------------------------------------------------------------
    async def lead(self, guard: Guard, token: int) -> None:
        """Analyse and recover until cancelled (the election cancels on loss of leadership).
        On the way out, the recoveries and operations it runs are cancelled and waited for:
        the election gives the key up only once they stopped."""
        next_demoted_check = 0.0
        try:
            while True:
                await self._state.wait_changed(self._options.tick)
                if time.monotonic() >= next_demoted_check:
                    next_demoted_check = time.monotonic() + self._options.demoted_check
                    await self._upkeep(guard)
                try:
                    await self._pass(guard, token)
                except (LeaseLost, asyncio.CancelledError):
                    raise
                except Exception as exc:  # a bug outside any one cluster's steps: next pass
                    self._internal_error("", "a pass of the leader's loop", exc)
        finally:
            await self._stop_running()
            if self._standby_fence is not None:
                self._standby_fence.close()  # a standby keeps no links

    async def _pass(self, guard: Guard, token: int) -> None:
        """One pass: analyse, publish what changed, start recoveries, each cluster alone."""
        suspects = self._drain_unreachable()
        # (with suspects, healthy-looking instances too: the snapshot of a master that
        # just died may still say it is fine)
        analyses = self._analyse_isolated(everything=bool(suspects))
        await self._publish_changes(analyses)
        for analysis in analyses:
            # An instance with replicas that discovery just reported unreachable is
            # verified at once, before its next snapshot says anything: the direct
            # probes of the recovery decide whether it is a failure.
            suspected = analysis.key in suspects and analysis.count_replicas > 0
            with self._isolated(analysis.cluster_name, "starting a recovery"):
                if self.recoverable(analysis) or suspected:
                    self._start(analysis, guard, token)

    async def _upkeep(self, guard: Guard) -> None:
        """Operator state and returning old masters; a failure here never stops the pass."""
        try:
            await self.refresh_operator_state()
            await self.keep_demoted_fenced(guard)
            await self._keep_heartbeat(guard)
            if self._standby_fence is not None:
                # (a master that stopped answering keeps its link: that is when it is needed)
                self._standby_fence.keep(
                    s.instance_key for s in self._state.snapshots.values() if s.replica_keys
                )
        except LeaseLost:
            raise
        except OrchestratorError as exc:  # etcd or an instance not answering
            log.warning("reading operator state / returning old masters: %s", exc)
        except Exception as exc:
            self._internal_error("", "reading operator state / returning old masters", exc)

    async def _keep_heartbeat(self, guard: Guard) -> None:
        """The managed replica heartbeat (:mod:`~orchestrator_recovery.failover.heartbeat`),
        only while no recovery or operation runs anywhere: restarting a replica's threads is
        harmless on a healthy cluster and confusing in the middle of a failover."""
        if self._heartbeat is None or not self._heartbeat.policy.managed:
            return
        if any(not task.done() for task in self._running.values()):
            return
        await self._heartbeat.keep(self._state.snapshots, guard, downtimed=self._downtimed)

    async def _stop_running(self) -> None:
        """Cancel the recoveries and operations still running and wait until they ended."""
        running = [task for task in self._running.values() if not task.done()]
        running += [task for task in self._wake_fences.values() if not task.done()]
        for task in running:
            task.cancel()
        self.aftermath.cancel()
        if running:
            await asyncio.wait(running)

    @contextlib.contextmanager
    def _isolated(self, cluster: str, doing: str) -> Iterator[None]:
        """Run one cluster's step: an unexpected exception is logged, counted and swallowed,
        so the next cluster's step runs; an expected failure (etcd, the bus or an instance not
        answering) is a warning. LeaseLost and cancellation pass through."""
        try:
            yield
        except (LeaseLost, asyncio.CancelledError):
            raise
        except OrchestratorError as exc:
            log.warning("cluster %s: %s: %s; tried again later", cluster, doing, exc)
        except Exception as exc:
            self._internal_error(cluster, doing, exc)

    def _internal_error(self, cluster: str, doing: str, exc: BaseException) -> None:
        """Log (ERROR, with the traceback) and count an unexpected exception; it also goes to
        the audit, so operators see it without the log, at most once per cluster every
        ``INTERNAL_ERROR_AUDIT_SECONDS`` (a bug hit on every pass would flood it)."""
        self.internal_errors[cluster] += 1
        where = f"cluster {cluster}" if cluster else "the fleet"
        log.error("%s: %s failed: %r; going on", where, doing, exc, exc_info=exc)
        last = self._audited_error.get(cluster)
        if last is not None and time.monotonic() - last < INTERNAL_ERROR_AUDIT_SECONDS:
            return
        self._audited_error[cluster] = time.monotonic()
        self._spawn_audit(
            AuditEvent(
                type="internal-error",
                message=f"recovery worker: {doing} for {where} failed unexpectedly "
                f"({type(exc).__name__}); other clusters are not affected; see its log",
                cluster=cluster,
                user=self._options.worker_id,
                at=self._clock(),
                ok=False,
            )
        )

    def _spawn_audit(self, event: AuditEvent) -> None:
        task: asyncio.Future[object] = asyncio.ensure_future(self._publisher.audit(event))
        self._audits.add(task)
        task.add_done_callback(self._audits.discard)
        task.add_done_callback(_quiet)

    def _drain_unreachable(self) -> set[InstanceKey]:
        found: set[InstanceKey] = set()
        while not self._state.unreachable.empty():
            found.add(self._state.unreachable.get_nowait())
        return found

    def analyse(
        self,
        snapshots: Iterable[InstanceSnapshot] | None = None,
        *,
        everything: bool = False,
        for_recovery: bool = True,
    ) -> list[Analysis]:
        """The fleet's analysis (problems only, unless ``everything``). ``for_recovery``: the
        instances ``RecoveryIgnoreHostnameFilters`` matches get no analysis (orchestrator)."""
        seen = list(self._state.snapshots.values() if snapshots is None else snapshots)
        self._binlog_history = track_binlog_coordinates(self._binlog_history, seen)
        self._desynced_since = track_galera_desync(self._desynced_since, seen)
        options = self._options.analysis
        if not for_recovery:
            options = dataclasses.replace(options, recovery_ignore_hostname_filters=())
        return analyze(
            seen,
            now=self._clock(),
            downtimed=self._downtimed,
            options=options,
            include_no_problem=everything,
            binlog_history=self._binlog_history,
            desynced_since=self._desynced_since,
        )

    def _analyse_isolated(self, *, everything: bool) -> list[Analysis]:
        """The fleet's analysis; when that raises, each cluster's alone, leaving out the
        clusters whose analysis raises (logged, counted)."""
        try:
            return self.analyse(everything=everything)
        except Exception as exc:
            self._internal_error("", "analysing the whole fleet", exc)
        found: list[Analysis] = []
        for group in clusters_of(self._state.snapshots.values()):
            with self._isolated(cluster_label(group), "analysing"):
                found.extend(self.analyse(group, everything=everything))
        return found

    def _start(self, analysis: Analysis, guard: Guard, token: int) -> None:
        cluster = analysis.cluster_name
        running = self._running.get(cluster)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self.recover(analysis, guard, token), name=f"recover {cluster}")
        self._running[cluster] = task
        task.add_done_callback(lambda done: self._finished(done, cluster))

    def fence_on_wake(self, failed: str, successor: str, guard: Guard) -> None:
        """After a master failover whose failed master hung (its last probe timed out rather
        than being refused), keep trying to reach it and make it read_only (clients killed)
        the moment it answers: a resumed process would otherwise take writes until the
        periodic fencing of returning masters probes it. See docs/recovery.md, "Hung master"."""
        if not failed or not successor:
            return
        key = InstanceKey.parse(failed)
        snapshot = self._state.snapshots.get(key)
        hung = key in self._hung or (snapshot is not None and snapshot.probe.timed_out)
        self._hung.discard(key)
        if not hung:
            return  # it refused (dead): the periodic fencing is enough
        running = self._wake_fences.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._fence_when_awake(key, guard), name=f"fence {key}")
        self._wake_fences[key] = task
        task.add_done_callback(lambda done: self._fence_ended(done, key))

    async def _fence_when_awake(self, key: InstanceKey, guard: Guard) -> None:
        """``read_only`` sent at once on the link kept from before the hang (it runs the
        moment the server resumes), and fresh connections tried until one answers, which
        fences it fully (``read_only``, clients killed)."""
        early: asyncio.Task[bool] | None = None
        if self._standby_fence is not None:
            early = asyncio.create_task(
                self._standby_fence.fence(key, guard, within=FENCE_ON_WAKE_WINDOW)
            )
        try:
            await self._fence_by_new_connections(key, guard)
        finally:
            if early is not None:
                early.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await early

    async def _fence_by_new_connections(self, key: InstanceKey, guard: Guard) -> None:
        deadline = time.monotonic() + FENCE_ON_WAKE_WINDOW
        while time.monotonic() < deadline:
            if self._returning.is_promoting(key) or back_in_service(
                key, None, (), self._state.snapshots.values()
            ):
                return  # an operator made it a master again
            fence = await self._executor.fence(key, guard)
            if fence.fenced:
                log.warning("%s answered again after its failover: made read_only", key)
                await self._publisher.audit(
                    AuditEvent(
                        type="fence-returning-master",
                        message=f"{key} answered again after its failover (it had hung): "
                        "made read_only, its clients cut off",
                        key=str(key),
                        user=self._options.worker_id,
                        at=self._clock(),
                        ok=True,
                    )
                )
                return
            await asyncio.sleep(FENCE_ON_WAKE_PAUSE)

    def _fence_ended(self, task: asyncio.Task[None], key: InstanceKey) -> None:
        if self._wake_fences.get(key) is task:
            del self._wake_fences[key]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, LeaseLost):
            self._internal_error("", f"fencing {key} when it wakes", error)

    def _finished(self, task: asyncio.Task[Outcome | None], cluster: str) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None or isinstance(error, LeaseLost):
            return
        if isinstance(error, OrchestratorError):  # etcd or the bus did not answer: next pass
            log.warning("%s stopped: %s; it is tried again", task.get_name(), error)
        else:  # a bug: this cluster's recovery is tried again next pass, the others go on
            self._internal_error(cluster, "its recovery", error)

    async def refresh_operator_state(self) -> None:
        """Downtime and promotion rules registered through topology-api (kept in etcd)."""
        if self._operator_state is None:
            return
        now = self._clock()
        self._downtimed = await self._operator_state.downtimed(now)
        self._candidates = await self._operator_state.candidates(now)

    async def took_over(self, data: RecoveryData) -> None:
        """Remember in etcd that a graceful takeover made ``data.successor`` the master."""
        await self._control.took_over(data, ended_at=self._clock())

    # --- one recovery -------------------------------------------------------------------------
    async def verify_confirmed(self, analysis: Analysis) -> Analysis:
        """:meth:`verify`, and again (after 20 ms, the wait doubling up to
        :data:`REVERIFY_INTERVAL`) while the master does not answer us but its replicas still
        say they replicate from it (``UnreachableMaster``), for a bounded window: a hung master
        keeps their links open until their ``slave_net_timeout``, then they confirm. Nothing is
        decided on less than the replicas' own word."""
        verified = await self.verify(analysis)
        deadline = time.monotonic() + self._reverify_window(analysis)
        pause = REVERIFY_FIRST_INTERVAL
        while verified.code is AnalysisCode.UNREACHABLE_MASTER and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, REVERIFY_INTERVAL)
            verified = await self.verify(analysis)
        return verified

    def _reverify_window(self, analysis: Analysis) -> float:
        """The replicas' longest known ``slave_net_timeout`` and a second, at most
        :data:`REVERIFY_MAX_WINDOW` (a replica that does not report one counts as 0)."""
        known = self._state.snapshots
        timeouts = [
            (snapshot.slave_net_timeout if snapshot else None) or 0
            for snapshot in (known.get(key) for key in analysis.replicas)
        ]
        return min(max(timeouts, default=0) + 1.0, REVERIFY_MAX_WINDOW)

    async def _probe_suspect(self, key: InstanceKey) -> InstanceSnapshot:
        """The suspected instance probed, within :data:`VERIFY_MASTER_SECONDS` when a snapshot
        of it is known (a failed probe otherwise)."""
        previous = self._state.snapshots.get(key)
        if previous is None:
            return await self._probe(key, previous)
        attempted = self._clock()
        try:
            async with asyncio.timeout(VERIFY_MASTER_SECONDS):
                answer = await self._probe(key, previous)
        except TimeoutError:
            self._hung.add(key)
            return previous.with_failed_probe(
                ProbeFacts(
                    ok=False,
                    checked_at=self._clock(),
                    attempted_at=attempted,
                    latency_seconds=VERIFY_MASTER_SECONDS,
                    error=f"no answer within {VERIFY_MASTER_SECONDS:g}s (verification)",
                    timed_out=True,
                )
            )
        if answer.probe.timed_out:
            self._hung.add(key)
        else:
            self._hung.discard(key)
        return answer

    async def verify(self, analysis: Analysis) -> Analysis:
        """The failure as the instances answer now: the failed one and its replicas probed
        directly (at once, concurrently), the fleet analysed again with their answers. A
        Galera node's peers are probed too: they are where its replicas would go, and the plan
        compares their GTID positions with the replicas' fresh ones."""
        known = self._state.snapshots
        failed = known.get(analysis.key)
        peers = galera_peers(failed, known) if failed is not None else []
        keys = [*analysis.replicas, *(peer.instance_key for peer in peers)]
        fresh = await asyncio.gather(
            self._probe_suspect(analysis.key), *(self._probe(key, known.get(key)) for key in keys)
        )
        for snapshot in fresh:
            self._state.put(snapshot)
        # its own cluster only: a bug another cluster's snapshots trip is not this one's
        cluster = next(
            (g for g in clusters_of(self._state.snapshots.values()) if _holds(g, analysis.key)),
            [],
        )
        for again in self.analyse(cluster):
            if again.key == analysis.key:
                return again
        return replace(analysis, code=AnalysisCode.NO_PROBLEM)


def clusters_of(snapshots: Iterable[InstanceSnapshot]) -> list[list[InstanceSnapshot]]:
    """The snapshots grouped into clusters: instances linked by replication (either way, at
    any depth) together, and the nodes of one Galera cluster (same state UUID) together. Pure;
    used to analyse one cluster at a time when the whole fleet's analysis fails."""
    by_key = {snapshot.instance_key: snapshot for snapshot in snapshots}
    parent = {key: key for key in by_key}

    def root(key: InstanceKey) -> InstanceKey:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    galera_node: dict[str, InstanceKey] = {}
    for key, snapshot in by_key.items():
        for channel in snapshot.channels:
            with contextlib.suppress(Exception):  # a malformed master: the instance stays alone
                master = channel.linked_master
                if master in parent:
                    parent[root(key)] = root(master)
        if uuid := snapshot.galera_cluster_uuid:
            parent[root(key)] = root(galera_node.setdefault(uuid, key))
    groups: dict[InstanceKey, list[InstanceSnapshot]] = {}
    for key, snapshot in by_key.items():
        groups.setdefault(root(key), []).append(snapshot)
    return list(groups.values())


def _holds(group: Iterable[InstanceSnapshot], key: InstanceKey) -> bool:
    return any(snapshot.instance_key == key for snapshot in group)


def cluster_label(group: Sequence[InstanceSnapshot]) -> str:
    """The name the analysis would give the cluster of ``group``: its master's key (an
    instance replicating from nobody; of several, as in a Galera cluster, one that is no Galera
    node first, then the smallest), else its smallest key."""
    masters = sorted((bool(s.galera_cluster_uuid), s.instance_key) for s in group if not s.channels)
    return str(masters[0][1]) if masters else str(min(s.instance_key for s in group))


def _quiet(future: asyncio.Future[object]) -> None:
    """An audit that could not be published is only logged (never an unretrieved error)."""
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not publish an audit entry: %r", future.exception())
