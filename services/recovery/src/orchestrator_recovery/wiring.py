"""The worker's ports filled in: the pure planner of ``orchestrator_shared.recovery`` fed from
the fleet, the MySQL executor of :mod:`orchestrator_recovery.failover.executor` (with the semi-sync
recovery of :mod:`orchestrator_recovery.failover.semi_sync` and the operations a recovery's
aftermath uses), and the operator's shell hooks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from orchestrator_adapters.ports import Audit, Guard
from orchestrator_recovery.failover.catch_up import CatchUpPolicy
from orchestrator_recovery.failover.executor import (
    fail_over_master,
    fence_returning_master,
    relocate_replicas,
)
from orchestrator_recovery.failover.outcome import FailoverOutcome
from orchestrator_recovery.failover.phases import milliseconds
from orchestrator_recovery.failover.semi_sync import carry_out_semi_sync
from orchestrator_recovery.failover.timeouts import HUNG_FENCE_TIMEOUT, Timeouts
from orchestrator_recovery.hooks import HookContext, HookResult, HookSettings, HookStage, run_hooks
from orchestrator_recovery.mysql import Links, MySQLAccess
from orchestrator_recovery.operations.instance import instance_operations
from orchestrator_recovery.operations.moves import CATCH_UP, STATEMENT_TIMEOUT, VERIFY, Mover
from orchestrator_recovery.operations.moves_co_master import CoMaster
from orchestrator_recovery.operations.moves_many import ManyMoves
from orchestrator_recovery.operations.moves_sql import REASONABLE_LAG_SECONDS
from orchestrator_recovery.ports import (
    GALERA_FAILURES,
    MASTER_FAILURES,
    SEMI_SYNC_FAILURES,
    AnyPlanned,
    Failures,
    Fenced,
    Handler,
    MasterPlanned,
    MasterResult,
    Refused,
    Relocated,
    RelocationPlanned,
    SemiSyncPlanned,
    SemiSyncResult,
)
from orchestrator_shared.analysis import Analysis
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import OperationRefused
from orchestrator_shared.events import (
    HOOK_AUDIT_PREFIX,
    HOOK_OUTPUT_MARK,
    AuditEvent,
    RecoveryData,
    TimedPhase,
)
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    MasterPlan,
    PlanOptions,
    Refusal,
    RelocationPlan,
    SemiSyncMode,
    SemiSyncPlan,
    cluster_matches_filters,
    plan_intermediate_master_recovery,
    plan_master_recovery,
    plan_semi_sync_replicas,
)
from orchestrator_shared.recovery.galera import galera_peers, plan_galera_relocation
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot


def plan_options(settings: Settings) -> PlanOptions:
    lag_minutes = settings.FailMasterPromotionOnLagMinutes
    postpone_minutes = settings.PostponeReplicaRecoveryOnLagMinutes
    return PlanOptions(
        fail_on_lag_seconds=lag_minutes * 60.0 if lag_minutes > 0 else None,
        prevent_cross_data_center=settings.PreventCrossDataCenterMasterFailover,
        prevent_cross_region=settings.PreventCrossRegionMasterFailover,
        recover_master_cluster_filters=settings.RecoverMasterClusterFilters,
        recover_intermediate_master_cluster_filters=settings.RecoverIntermediateMasterClusterFilters,
        promotion_ignore_hostname_filters=settings.PromotionIgnoreHostnameFilters,
        postpone_lag_seconds=postpone_minutes * 60.0 if postpone_minutes > 0 else None,
    )


def semi_sync_mode(settings: Settings) -> SemiSyncMode | None:
    """Which semi-sync recovery the settings ask for: ``EnforceExactSemiSyncReplicas`` wins
    over ``RecoverLockedSemiSyncMaster`` (as in orchestrator); None: neither."""
    if settings.EnforceExactSemiSyncReplicas:
        return SemiSyncMode.EXACT
    if settings.RecoverLockedSemiSyncMaster:
        return SemiSyncMode.AT_LEAST
    return None


class SharedPlanner:
    """Chooses from what the worker knows: the failed instance's replicas, its siblings and
    its master, as last seen (the failed one and its replicas just probed by the worker)."""

    def __init__(self, options: PlanOptions, *, semi_sync: SemiSyncMode | None = None) -> None:
        self._options = options
        self._semi_sync = semi_sync

    def plan(
        self,
        analysis: Analysis,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        *,
        forced: bool,
        requested: InstanceKey | None,
        candidates: Mapping[InstanceKey, PromotionRule],
    ) -> AnyPlanned | Refused:
        failed = snapshots.get(analysis.key)
        if failed is None:
            return Refused(reason=f"no snapshot of {analysis.key}", rejected={})
        replicas = [snapshots[key] for key in analysis.replicas if key in snapshots]
        if analysis.code in SEMI_SYNC_FAILURES:
            return self._semi_sync_plan(analysis, failed, replicas, candidates)
        result: MasterPlan | RelocationPlan | Refusal
        if failed.galera is not None and analysis.code in GALERA_FAILURES:
            # its peers stay writable: its async replicas move to one of them (docs/galera.md)
            result = plan_galera_relocation(
                failed,
                replicas,
                peers=galera_peers(failed, snapshots),
                cluster=analysis.cluster_name,
                cluster_alias=analysis.cluster_alias,
                candidates=candidates,
                options=self._options,
                forced=forced,
            )
        elif analysis.code in MASTER_FAILURES:
            result = plan_master_recovery(
                failed,
                replicas,
                cluster=analysis.cluster_name,
                cluster_alias=analysis.cluster_alias,
                candidates=candidates,
                options=self._options,
                requested=requested,
                forced=forced,
            )
        else:
            master_key = analysis.master_key
            master = snapshots.get(master_key) if master_key is not None else None
            siblings = [
                snap
                for snap in snapshots.values()
                if master_key is not None
                and snap.master_key == master_key
                and snap.instance_key != analysis.key
            ]
            result = plan_intermediate_master_recovery(
                failed,
                replicas,
                siblings=siblings,
                master=master,
                cluster=analysis.cluster_name,
                cluster_alias=analysis.cluster_alias,
                candidates=candidates,
                options=self._options,
                forced=forced,
            )
        if isinstance(result, Refusal):
            return Refused(reason=result.reason, rejected=_texts(result.rejected))
        if isinstance(result, MasterPlan):
            return MasterPlanned(
                plan=result,
                successor=str(result.successor),
                rejected=_texts(result.rejected),
                lost=_texts(result.lost),
                postponed=tuple(str(key) for key in result.postponed),
            )
        return RelocationPlanned(
            plan=result,
            successor="",
            rejected=_texts(result.rejected),
            lost=_texts(result.lost),
            galera=result.galera,
        )

    def _semi_sync_plan(
        self,
        analysis: Analysis,
        master: InstanceSnapshot,
        replicas: list[InstanceSnapshot],
        candidates: Mapping[InstanceKey, PromotionRule],
    ) -> SemiSyncPlanned | Refused:
        if self._semi_sync is None:
            return Refused(
                reason="neither RecoverLockedSemiSyncMaster nor EnforceExactSemiSyncReplicas is "
                "set: semi-sync problems are not recovered",
                rejected={},
            )
        result = plan_semi_sync_replicas(
            master,
            replicas,
            cluster=analysis.cluster_name,
            mode=self._semi_sync,
            options=self._options,
            candidates=candidates,
        )
        if isinstance(result, Refusal):
            return Refused(reason=result.reason, rejected=_texts(result.rejected))
        return SemiSyncPlanned(plan=result, successor="", rejected=_texts(result.reasons), lost={})


class MySQLExecutor:
    """Carries plans out: :func:`fail_over_master` / :func:`relocate_replicas`, the semi-sync
    changes (:func:`carry_out_semi_sync`), and the aftermath of a master failover (postponed
    replicas moved, lost ones detached with the ``detach-replica-master-host`` operation)."""

    def __init__(
        self,
        access: MySQLAccess,
        *,
        catch_up: CatchUpPolicy,
        apply_promotion: bool = True,
        audit: Callable[[AuditEvent], Awaitable[object]],
        worker_id: str,
    ) -> None:
        self._access = access
        self._catch_up = catch_up
        # the catch-up bound also bounds how long a relocation waits for a new master
        self._timeouts = Timeouts(catch_up=catch_up.timeout)
        self._apply_promotion = apply_promotion
        self._audit = audit
        self._worker_id = worker_id

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        audit: Callable[[AuditEvent], Awaitable[object]],
        worker_id: str,
    ) -> MySQLExecutor:
        return cls(
            MySQLAccess.from_settings(settings),
            catch_up=CatchUpPolicy.from_settings(settings),
            apply_promotion=settings.ApplyMySQLPromotionAfterMasterFailover,
            audit=audit,
            worker_id=worker_id,
        )

    async def fail_over_master(
        self,
        plan: MasterPlan,
        guard: Guard,
        *,
        on_writable: Callable[[], Awaitable[None]] | None = None,
    ) -> MasterResult:
        outcome = await fail_over_master(
            failed=plan.failed,
            successor=plan.successor,
            repoint=plan.repoint,
            postpone=tuple(plan.postponed),
            guard=_confirming(guard),
            session=self._access,
            semi_sync_master=plan.semi_sync_master,
            catch_up=self._catch_up,
            apply_promotion=self._apply_promotion,
            timeouts=self._fail_over_timeouts(plan),
            flavor=plan.flavor if plan.flavor is not Flavor.UNKNOWN else Flavor.MARIADB,
            on_writable=on_writable,
        )
        return MasterResult(
            successor=str(outcome.successor),
            repointed=tuple(str(key) for key in outcome.repointed),
            lost=_texts(outcome.lost),
            postponed=tuple(str(key) for key in outcome.postponed),
            promotion_applied=outcome.promotion_applied,
            phases=executor_phases(outcome),
        )

    def _fail_over_timeouts(self, plan: MasterPlan) -> Timeouts:
        """A hung failed master gets a short fence attempt (:data:`HUNG_FENCE_TIMEOUT`)."""
        if not plan.failed_hung:
            return self._timeouts
        fence = min(self._timeouts.fence, HUNG_FENCE_TIMEOUT)
        return dataclasses.replace(self._timeouts, fence=fence)

    async def relocate(self, plan: RelocationPlan, guard: Guard) -> Relocated:
        outcome = await relocate_replicas(
            moves=plan.moves,
            guard=_confirming(guard),
            session=self._access,
            timeouts=self._timeouts,
        )
        return Relocated(moved=tuple(str(key) for key in outcome.moved), lost=_texts(outcome.lost))

    async def semi_sync(self, plan: SemiSyncPlan, guard: Guard) -> SemiSyncResult:
        operations = self._operations(guard)
        return await carry_out_semi_sync(
            plan,
            enable=operations["enable-semi-sync-replica"],
            disable=operations["disable-semi-sync-replica"],
            access=self._access,
            requested_by=self._worker_id,
        )

    async def move_postponed(
        self, successor: str, replicas: tuple[str, ...], guard: Guard
    ) -> Failures:
        new_master = InstanceKey.parse(successor)
        outcome = await relocate_replicas(
            moves=[(InstanceKey.parse(replica), new_master) for replica in replicas],
            guard=_confirming(guard),
            session=self._access,
            timeouts=self._timeouts,
        )
        return _texts(outcome.lost)

    async def detach_lost(self, replicas: tuple[str, ...], guard: Guard) -> Failures:
        detach = self._operations(guard)["detach-replica-master-host"]
        failures: Failures = {}
        for replica in replicas:
            request = CommandRequest(
                operation="detach-replica-master-host",
                instance=replica,
                requested_by=self._worker_id,
            )
            try:
                await detach(request)
            except OperationRefused as exc:
                failures[replica] = str(exc)
        return failures

    async def fence(self, key: InstanceKey, guard: Guard) -> Fenced:
        outcome = await fence_returning_master(
            key, self._access, _confirming(guard), timeouts=self._timeouts
        )
        return Fenced(fenced=outcome.fenced, detail=outcome.detail)

    def _operations(self, guard: Guard) -> Mapping[str, Handler]:
        """The instance operations, behind this recovery's guard and audited as the worker."""
        return instance_operations(
            access=self._access, guard=guard, audit=self._audit, worker_id=self._worker_id
        )


class ShellHooks:
    """Runs the operator's hook commands (:mod:`orchestrator_recovery.hooks`) with the facts of
    the recovery; each hook's result goes to the audit (its output included)."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str,
        audit: Callable[[AuditEvent], Awaitable[object]],
    ) -> None:
        self._hooks = HookSettings(
            on_failure_detection_processes=settings.OnFailureDetectionProcesses,
            pre_failover_processes=settings.PreFailoverProcesses,
            post_master_failover_processes=settings.PostMasterFailoverProcesses,
            post_intermediate_master_failover_processes=(
                settings.PostIntermediateMasterFailoverProcesses
            ),
            post_failover_processes=settings.PostFailoverProcesses,
            post_unsuccessful_failover_processes=settings.PostUnsuccessfulFailoverProcesses,
            pre_graceful_takeover_processes=settings.PreGracefulTakeoverProcesses,
            post_graceful_takeover_processes=settings.PostGracefulTakeoverProcesses,
            post_take_master_processes=settings.PostTakeMasterProcesses,
            timeout_seconds=settings.HookTimeoutSeconds,
            environment_pass_through=settings.HookEnvironmentPassThrough,
        )
        self._master_filters = settings.RecoverMasterClusterFilters
        self._intermediate_filters = settings.RecoverIntermediateMasterClusterFilters
        self._host = host
        self._audit = audit

    async def run(self, stage: HookStage, analysis: Analysis, data: RecoveryData) -> None:
        commands = self._hooks.commands(stage)
        if not commands:
            return
        cluster, alias = analysis.cluster_name, analysis.cluster_alias
        context = HookContext(
            failure_type=analysis.code.value,
            failure_description=analysis.description,
            failed=analysis.key,
            failure_cluster=cluster,
            failure_cluster_alias=alias,
            is_master=analysis.is_master,
            is_co_master=analysis.is_co_master,
            command_hint=data.command,
            count_replicas=analysis.count_replicas,
            is_downtimed=analysis.is_downtimed,
            auto_master_recovery=cluster_matches_filters(
                self._master_filters, cluster=cluster, alias=alias
            ),
            auto_intermediate_master_recovery=cluster_matches_filters(
                self._intermediate_filters, cluster=cluster, alias=alias
            ),
            orchestrator_host=self._host,
            recovery_uid=data.recovery_id,
            replicas=analysis.replicas,
            lost_replicas=tuple(InstanceKey.parse(key) for key in sorted(data.lost)),
            successor=InstanceKey.parse(data.successor) if data.successor else None,
        )
        await self._run(stage, commands, context, key=data.failed, cluster=cluster)

    async def take_master(
        self, successor: InstanceKey, demoted: InstanceKey, *, cluster: str
    ) -> None:
        """``PostTakeMasterProcesses`` after ``successor`` took its master ``demoted``: as in
        orchestrator, ``ORC_SUCCESSOR_HOST`` and ``ORC_FAILED_HOST`` hold ``host:port`` and
        the two keys are the hook's ``$1`` and ``$2``; the placeholders and the other ``ORC_*``
        variables are there too (orchestrator sets none). A failing hook is audited; the move
        stands."""
        stage = HookStage.POST_TAKE_MASTER
        commands = self._hooks.commands(stage)
        if not commands:
            return
        context = HookContext(
            failure_type="",
            failure_description=f"take-master: {successor} took its master {demoted}",
            failed=demoted,
            failure_cluster=cluster,
            command_hint="take-master",
            orchestrator_host=self._host,
            successor=successor,
            environment={"ORC_SUCCESSOR_HOST": str(successor), "ORC_FAILED_HOST": str(demoted)},
        )
        await self._run(
            stage,
            commands,
            context,
            key=str(successor),
            cluster=cluster,
            arguments=(str(successor), str(demoted)),
        )

    async def _run(
        self,
        stage: HookStage,
        commands: tuple[str, ...],
        context: HookContext,
        *,
        key: str,
        cluster: str,
        arguments: tuple[str, ...] = (),
    ) -> None:
        async def audit(result: HookResult) -> None:
            await self._audit(
                AuditEvent(
                    type=f"{HOOK_AUDIT_PREFIX}{stage.value}",
                    message=result.describe()
                    + (f"{HOOK_OUTPUT_MARK}{result.output}" if result.output else ""),
                    key=key,
                    cluster=cluster,
                    user=self._host,
                    at=datetime.now(UTC),
                    ok=result.succeeded,
                )
            )

        await run_hooks(
            stage,
            commands,
            context,
            timeout=self._hooks.timeout_seconds,
            audit=audit,
            arguments=arguments,
            pass_through=self._hooks.environment_pass_through,
        )


def statements_applier(
    access: MySQLAccess, *, statement_timeout: float = STATEMENT_TIMEOUT
) -> Callable[[InstanceKey, Sequence[str], Guard], Awaitable[None]]:
    """Runs statements on one instance in order, each behind ``guard()`` (the managed
    heartbeat, :mod:`orchestrator_recovery.failover.heartbeat`). When one fails after a
    ``STOP SLAVE``, ``START SLAVE`` is still tried: a change that failed half-way must not leave
    a replica stopped."""

    async def apply(key: InstanceKey, statements: Sequence[str], guard: Guard) -> None:
        async with Links(access, statement_timeout=statement_timeout) as links:
            stopped = False
            try:
                for sql in statements:
                    await links.fenced(key, sql, guard)
                    stopped = stopped or sql.startswith("STOP SLAVE")
                    stopped = stopped and not sql.startswith("START SLAVE")
            except BaseException:
                if stopped:
                    with contextlib.suppress(Exception):
                        await links.fenced(key, "START SLAVE", guard)
                raise

    return apply


def _confirming(guard: Guard) -> Callable[[], Awaitable[object]]:
    """The election's guard as the executor takes it; its approval is passed on, so each
    statement's timeout is bounded by the lease (:meth:`Links.fenced`)."""

    async def confirm() -> object:
        return await guard()

    return confirm


def executor_phases(outcome: FailoverOutcome) -> dict[str, float]:
    """The executor's stretches of a master failover, in ms, for the recovery's events."""
    phases = {
        TimedPhase.PROMOTE: outcome.promote_seconds,
        TimedPhase.REPOINT: outcome.repoint_seconds,
    }
    return {str(name): milliseconds(value) for name, value in phases.items() if value is not None}


def _texts(mapping: Mapping[InstanceKey, str]) -> dict[str, str]:
    return {str(key): why for key, why in mapping.items()}


def move_operations(
    *,
    access: MySQLAccess,
    guard: Guard,
    audit: Audit,
    worker_id: str,
    statement_timeout: float = STATEMENT_TIMEOUT,
    catch_up: float = CATCH_UP,
    verify: float = VERIFY,
    max_lag: int = REASONABLE_LAG_SECONDS,
    credentials_query: str = "",
    after_take_master: Callable[[InstanceKey, InstanceKey, str], Awaitable[None]] | None = None,
) -> dict[str, Handler]:
    """The move handlers, by operation name, for :class:`CommandResponder`'s ``operations``:
    the single moves (:mod:`.operations.moves`) and the moves of many replicas
    (:mod:`.operations.moves_many`).
    ``credentials_query``: ``ReplicationCredentialsQuery``, for make-co-master;
    ``after_take_master``: the ``PostTakeMasterProcesses`` hooks."""
    mover = Mover(
        access=access,
        guard=guard,
        audit=audit,
        worker_id=worker_id,
        statement_timeout=statement_timeout,
        catch_up=catch_up,
        verify=verify,
        max_lag=max_lag,
    )
    many = ManyMoves(
        mover,
        CoMaster(mover, credentials_query=credentials_query),
        after_take_master=after_take_master,
    )
    return mover.handlers() | many.handlers()
