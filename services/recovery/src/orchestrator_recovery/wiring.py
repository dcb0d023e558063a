"""The worker's ports filled in: the pure planner of ``orchestrator_shared.recovery`` fed from
the fleet, and the MySQL executor of :mod:`orchestrator_recovery.executor`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from orchestrator_recovery.executor import (
    fail_over_master,
    fence_returning_master,
    relocate_replicas,
)
from orchestrator_recovery.hooks import HookContext, HookResult, HookSettings, HookStage, run_hooks
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.worker import MASTER_FAILURES, Guard, Planned, Refused
from orchestrator_shared.analysis import Analysis
from orchestrator_shared.config import Settings
from orchestrator_shared.events import AuditEvent, RecoveryData
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import PromotionRule
from orchestrator_shared.recovery import (
    MasterPlan,
    PlanOptions,
    Refusal,
    RelocationPlan,
    cluster_matches_filters,
    plan_intermediate_master_recovery,
    plan_master_recovery,
)
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot


def plan_options(settings: Settings) -> PlanOptions:
    lag_minutes = settings.FailMasterPromotionOnLagMinutes
    return PlanOptions(
        fail_on_lag_seconds=lag_minutes * 60.0 if lag_minutes > 0 else None,
        prevent_cross_data_center=settings.PreventCrossDataCenterMasterFailover,
        prevent_cross_region=settings.PreventCrossRegionMasterFailover,
        recover_master_cluster_filters=settings.RecoverMasterClusterFilters,
        recover_intermediate_master_cluster_filters=settings.RecoverIntermediateMasterClusterFilters,
    )


class SharedPlanner:
    """Chooses from what the worker knows: the failed instance's replicas, its siblings and
    its master, as last seen (the failed one and its replicas just probed by the worker)."""

    def __init__(self, options: PlanOptions) -> None:
        self._options = options

    def plan(
        self,
        analysis: Analysis,
        snapshots: Mapping[InstanceKey, InstanceSnapshot],
        *,
        forced: bool,
        requested: InstanceKey | None,
        candidates: Mapping[InstanceKey, PromotionRule],
    ) -> Planned | Refused:
        failed = snapshots.get(analysis.key)
        if failed is None:
            return Refused(reason=f"no snapshot of {analysis.key}", rejected={})
        replicas = [snapshots[key] for key in analysis.replicas if key in snapshots]
        result: MasterPlan | RelocationPlan | Refusal
        if analysis.code in MASTER_FAILURES:
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
        successor = str(result.successor) if isinstance(result, MasterPlan) else ""
        return Planned(
            plan=result,
            successor=successor,
            rejected=_texts(result.rejected),
            lost=_texts(result.lost),
        )


class MySQLExecutor:
    """Carries plans out with :func:`fail_over_master` / :func:`relocate_replicas`."""

    def __init__(self, access: MySQLAccess, *, catch_up_timeout: float) -> None:
        self._access = access
        self._catch_up_timeout = catch_up_timeout

    async def fail_over_master(
        self, plan: object, guard: Guard
    ) -> tuple[str, tuple[str, ...], dict[str, str]]:
        assert isinstance(plan, MasterPlan)
        outcome = await fail_over_master(
            failed=plan.failed,
            successor=plan.successor,
            repoint=plan.repoint,
            guard=_confirming(guard),
            session=self._access,
            semi_sync_master=plan.semi_sync_master,
            catch_up_timeout=self._catch_up_timeout,
            flavor=plan.flavor if plan.flavor is not Flavor.UNKNOWN else Flavor.MARIADB,
        )
        return (
            str(outcome.successor),
            tuple(str(key) for key in outcome.repointed),
            _texts(outcome.lost),
        )

    async def relocate(self, plan: object, guard: Guard) -> tuple[tuple[str, ...], dict[str, str]]:
        assert isinstance(plan, RelocationPlan)
        outcome = await relocate_replicas(
            moves=plan.moves,
            guard=_confirming(guard),
            session=self._access,
            catch_up_timeout=self._catch_up_timeout,
        )
        return tuple(str(key) for key in outcome.moved), _texts(outcome.lost)

    async def fence(self, key: InstanceKey, guard: Guard) -> tuple[bool, str]:
        outcome = await fence_returning_master(key, self._access, _confirming(guard))
        return outcome.fenced, outcome.detail


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
            timeout_seconds=settings.HookTimeoutSeconds,
        )
        self._master_filters = settings.RecoverMasterClusterFilters
        self._intermediate_filters = settings.RecoverIntermediateMasterClusterFilters
        self._host = host
        self._audit = audit

    async def run(self, stage: str, analysis: Analysis, data: RecoveryData) -> None:
        hook_stage = HookStage(stage)
        commands = self._hooks.commands(hook_stage)
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

        async def audit(result: HookResult) -> None:
            await self._audit(
                AuditEvent(
                    type=f"hook-{stage}",
                    message=result.describe()
                    + (f"; output: {result.output}" if result.output else ""),
                    key=data.failed,
                    cluster=cluster,
                    user=self._host,
                    at=datetime.now(UTC),
                    ok=result.succeeded,
                )
            )

        await run_hooks(
            hook_stage, commands, context, timeout=self._hooks.timeout_seconds, audit=audit
        )


def _confirming(guard: Guard) -> Callable[[], Awaitable[None]]:
    """The election's guard (it returns its approval) as the executor takes it."""

    async def confirm() -> None:
        await guard()

    return confirm


def _texts(mapping: Mapping[InstanceKey, str]) -> dict[str, str]:
    return {str(key): why for key, why in mapping.items()}
