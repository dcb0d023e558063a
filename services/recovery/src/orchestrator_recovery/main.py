"""``orchestrator-recovery --config FILE``: one recovery worker.

Start-up: settings (a bad value: one line, exit 2) → NATS and etcd (unreachable: one line,
exit 1) → the fleet feed (every worker keeps warm state) → the election. While this worker
leads, and once it has read the whole snapshot stream, it runs the recovery loop and answers
forwarded operations; a standby only keeps its state warm. SIGTERM or SIGINT: resign (a standby
takes over at once), stop, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import sys
from collections.abc import Iterable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

from orchestrator_adapters.election import Election, ElectionOptions, Leadership
from orchestrator_adapters.entrypoint import (
    BadConfiguration,
    ServiceEntry,
    on_stop_signals,
    service_cli,
)
from orchestrator_adapters.etcd import EtcdError
from orchestrator_adapters.nats_client import connect_nats
from orchestrator_adapters.observability import serve_observability
from orchestrator_adapters.probe import ConnectionPool, ProbeOptions, Prober
from orchestrator_recovery.failover.heartbeat import HeartbeatPolicy, ReplicaHeartbeat
from orchestrator_recovery.failover.worker import RecoveryWorker
from orchestrator_recovery.fleet import FleetFeed, FleetState
from orchestrator_recovery.metrics import RecoveryMetrics, RecoveryTally, metrics_registry
from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.operations import commands
from orchestrator_recovery.operations.drop_checks import DropChecks
from orchestrator_recovery.operations.instance import instance_operations
from orchestrator_recovery.operations.maintenance import MaintenanceLocks
from orchestrator_recovery.operations.takeover import Takeover, TakeoverOptions
from orchestrator_recovery.ports import WorkerOptions
from orchestrator_recovery.publisher import EventPublisher
from orchestrator_recovery.standby_fence import StandbyFence
from orchestrator_recovery.warm_links import WarmReplicaLinks
from orchestrator_recovery.wiring import (
    MySQLExecutor,
    SharedPlanner,
    ShellHooks,
    move_operations,
    plan_options,
    semi_sync_mode,
    statements_applier,
)
from orchestrator_shared.analysis import AnalysisOptions
from orchestrator_shared.bus import DiscoveryRequest, DiscoveryVerb, Subjects
from orchestrator_shared.command_signing import CommandVerifier
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import BusError
from orchestrator_shared.etcd.recovery import OperatorState, RecoveryControl
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.master_change import MasterChangeSigner
from orchestrator_shared.nats_auth import nats_auth

log = logging.getLogger("orchestrator_recovery")

# A verification probe must answer quickly: a dead master refuses at once, a hung one is
# given this long before it counts as not answering.
VERIFY_DEADLINE_SECONDS = 1.0


async def serve(settings: Settings) -> None:
    subjects = Subjects(settings.NATSSubjectPrefix)
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    async with AsyncExitStack() as stack:
        nc = await connect_nats(
            settings.NATSServers, name="orchestrator-recovery", auth=nats_auth(settings)
        )
        stack.push_async_callback(nc.close)
        election = Election(ElectionOptions.from_settings(settings))
        await election.start()
        stack.push_async_callback(election.close)
        identity = election.identity
        state = FleetState()
        probe_options = ProbeOptions.from_settings(settings)
        verify_options = dataclasses.replace(
            probe_options,
            connect_timeout=min(probe_options.connect_timeout, VERIFY_DEADLINE_SECONDS),
            deadline=min(probe_options.deadline, VERIFY_DEADLINE_SECONDS * 2),
        )
        pool = ConnectionPool(verify_options)
        stack.callback(pool.close)
        prober = Prober(verify_options, pool)
        control = RecoveryControl(election.client, prefix=settings.EtcdKeyPrefix)

        async def refresh(keys: Iterable[InstanceKey]) -> None:
            for key in keys:
                body = DiscoveryRequest(key=str(key)).model_dump_json(by_alias=True).encode()
                with contextlib.suppress(Exception):
                    await nc.publish(subjects.discovery(DiscoveryVerb.REFRESH), body)

        standby_fence = StandbyFence(MySQLAccess.from_settings(settings))
        stack.callback(standby_fence.close)
        tally = RecoveryTally()
        publisher = EventPublisher(
            nc,
            subjects,
            tally=tally.observe,
            master_signer=(
                MasterChangeSigner(settings.CommandSigningKey)
                if settings.CommandSigningKey
                else None
            ),
        )
        hooks = ShellHooks(settings, host=socket.gethostname(), audit=publisher.audit)
        worker = RecoveryWorker(
            WorkerOptions(
                worker_id=identity.id,
                source=f"orchestrator-recovery/{socket.gethostname()}/{identity.id}",
                analysis=AnalysisOptions.from_settings(settings),
                block_period=timedelta(seconds=settings.RecoveryPeriodBlockSeconds),
                semi_sync=semi_sync_mode(settings),
                detach_lost=settings.DetachLostReplicasAfterMasterFailover,
            ),
            state,
            probe=prober.probe,
            publisher=publisher,
            control=control,
            planner=SharedPlanner(plan_options(settings), semi_sync=semi_sync_mode(settings)),
            executor=MySQLExecutor.from_settings(
                settings, audit=publisher.audit, worker_id=identity.id
            ),
            refresh=refresh,
            hooks=hooks,
            operator_state=OperatorState(election.client, prefix=settings.EtcdKeyPrefix),
            heartbeat=ReplicaHeartbeat(
                HeartbeatPolicy(
                    managed=settings.ManageReplicaHeartbeat,
                    net_timeout=settings.ReplicaNetTimeoutSeconds,
                ),
                apply=statements_applier(MySQLAccess.from_settings(settings)),
                publisher=publisher,
                worker_id=identity.id,
                clock=lambda: datetime.now(UTC),
                refresh=refresh,
            ),
            standby_fence=standby_fence,
        )

        def token() -> int:
            leadership = election.leadership
            return leadership.token if leadership is not None else 0

        async def guard() -> object:
            return await election.guard()

        moves = move_operations(
            access=MySQLAccess.from_settings(settings),
            guard=guard,
            audit=publisher.audit,
            worker_id=identity.id,
            max_lag=settings.ReasonableMaintenanceReplicationLagSeconds,
            credentials_query=settings.ReplicationCredentialsQuery,
            after_take_master=lambda successor, demoted, cluster: hooks.take_master(
                successor, demoted, cluster=cluster
            ),
        )
        takeovers = Takeover(
            access=MySQLAccess.from_settings(settings),
            guard=guard,
            token=token,
            worker=worker,
            relocate=moves["relocate"],
            plan_options=plan_options(settings),
            options=TakeoverOptions(
                max_lag=settings.ReasonableMaintenanceReplicationLagSeconds,
                credentials_query=settings.ReplicationCredentialsQuery,
            ),
            worker_id=identity.id,
            promoted=publisher.promoted,
        ).handlers()
        locks = MaintenanceLocks(
            election.client,
            prefix=settings.EtcdKeyPrefix,
            guard=guard,
            audit=publisher.audit,
            worker_id=identity.id,
            default_duration=timedelta(minutes=settings.MaintenanceExpireMinutes),
        )
        responder = commands.CommandResponder(
            nc,
            subjects,
            worker,
            control,
            commands.Leadership(lambda: election.is_leader, guard, token),
            operations=instance_operations(
                access=MySQLAccess.from_settings(settings),
                guard=guard,
                audit=publisher.audit,
                worker_id=identity.id,
            )
            | moves
            | takeovers,
            queries=DropChecks(
                access=MySQLAccess.from_settings(settings),
                max_lag=settings.ReasonableMaintenanceReplicationLagSeconds,
                locks=locks.active,
            ).handlers(),
            locks=locks,
            verifier=CommandVerifier(
                settings.CommandSigningKey, allow_unsigned=settings.AllowUnsignedCommands
            ),
            audit=publisher.audit,
            hosts=HostPolicy.from_settings(settings),
        )

        async def lead(term: Leadership) -> None:
            await state.loaded.wait()  # never act on a half-read fleet
            log.info("leading recovery (fencing token %d)", term.token)
            # connections to the replicas kept open for a failure's verification, while leading
            warming = asyncio.create_task(WarmReplicaLinks(state, prober.warm).run())
            try:
                await worker.lead(guard, term.token)
            finally:
                warming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await warming

        feed = FleetFeed(nc, subjects, state)
        if settings.RecoveryMetricsListenAddress:
            collector = RecoveryMetrics(
                worker=worker,
                responder=responder,
                publisher=publisher,
                feed=feed,
                leading=lambda: election.is_leader,
            )

            def ready() -> str:
                if not nc.is_connected:
                    return "not connected to NATS"
                if not election.etcd_reachable:
                    return "etcd unreachable"
                return "" if state.loaded.is_set() else "the fleet is not read yet"

            serve_observability(
                stack,
                settings.RecoveryMetricsListenAddress,
                registry=metrics_registry(collector, tally),
                ready=ready,
            )
        log.info("recovery worker %s started", identity.id)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(publisher.run()),
                group.create_task(feed.run()),
                group.create_task(election.run_while_leader(lead)),
                group.create_task(responder.run()),
            ]
            await stop.wait()
            log.info("stopping: resigning leadership")
            await election.resign()
            for task in tasks:
                task.cancel()
        await publisher.drain()  # events of a recovery that just ended
    log.info("recovery worker stopped")


def check_configuration(settings: Settings) -> None:
    """A worker needs the bus and the election: no local defaults for either."""
    if not settings.NATSServers or not settings.EtcdEndpoints:
        raise BadConfiguration(
            "NATSServers and EtcdEndpoints are required (orchestrator up fills them in)"
        )


ENTRY = ServiceEntry(
    prog="orchestrator-recovery",
    description="A recovery worker: analyse the fleet, and fail over when it leads.",
    service="recovery",
    log=log,
    failures=(BusError, EtcdError, OSError),
    check=check_configuration,
)


def cli(argv: list[str] | None = None) -> int:
    return service_cli(ENTRY, serve, argv)


if __name__ == "__main__":
    sys.exit(cli())
