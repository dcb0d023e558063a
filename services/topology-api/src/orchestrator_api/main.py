"""``orchestrator-topology-api --config FILE``: storage, the bus consumer and the REST API.

Lifecycle: settings (bad values, an open API on a non-loopback address, or HTTPS files that
cannot serve, stop start-up with one line) → store (schema migrated) → NATS (consumer + discovery
requests) → uvicorn on ``ListenAddress`` (HTTPS with ``UseSSL``) until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
import uvloop
from prometheus_client import CollectorRegistry

from orchestrator_adapters import tls
from orchestrator_adapters.entrypoint import (
    ServiceEntry,
    leave_stop_signals_to_uvicorn,
    service_cli,
)
from orchestrator_adapters.etcd import EtcdClient, EtcdOptions
from orchestrator_api.app import create_app
from orchestrator_api.auth import check_listen_policy, startup_warnings
from orchestrator_api.discovery_client import NatsRequester
from orchestrator_api.http.client_certificates import serving
from orchestrator_api.http.context import ApiContext
from orchestrator_api.leadership import LeaderWatch
from orchestrator_api.live import LiveHub
from orchestrator_api.promotions import PromotionMetrics, Promotions, changed_notice
from orchestrator_api.store import Store, open_store
from orchestrator_api.store.consumer import ConsumerMetrics, StoreConsumer, durable_prefix
from orchestrator_api.store.mysql import MySQLBackend
from orchestrator_shared.bus import Subjects
from orchestrator_shared.command_signing import command_signer, signer_warnings
from orchestrator_shared.config import Settings, parse_listen_address
from orchestrator_shared.errors import BusError, StoreError
from orchestrator_shared.etcd.recovery import OperatorState
from orchestrator_shared.gc_pacing import pace_garbage_collection
from orchestrator_shared.master_change import MasterChangeVerifier
from orchestrator_shared.nats_auth import nats_auth

log = logging.getLogger("orchestrator_api")


PURGE_INTERVAL_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 5


async def purge_history(store: Store, *, keep: timedelta) -> None:
    """Hourly: drop expired downtime and candidates, and history older than ``keep``."""
    while True:
        now = datetime.now(UTC)
        try:
            removed = await store.purge(now=now, history_before=now - keep)
            if removed:
                log.info("purged %d expired or old rows", removed)
        except StoreError as exc:
            log.warning("purge failed: %s", exc)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


class ApiServer(uvicorn.Server):
    """uvicorn, ending the live streams when it shuts down: it waits for open responses to
    finish (up to ``timeout_graceful_shutdown``), and a stream never does by itself."""

    def __init__(self, config: uvicorn.Config, *, live: LiveHub) -> None:
        super().__init__(config)
        self._live = live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._live.end_streams()
        await super().shutdown(sockets)


async def serve(settings: Settings) -> None:
    subjects = Subjects(settings.NATSSubjectPrefix)
    servers = settings.nats_servers_or_local
    auth = nats_auth(settings)
    async with AsyncExitStack() as stack:
        store = await open_store(
            settings.BackendDB,
            sqlite_path=settings.SQLite3DataFile,
            postgres_dsn=settings.PostgreSQLDSN,
            mysql=MySQLBackend.from_settings(settings) if settings.BackendDB == "mysql" else None,
        )
        stack.push_async_callback(store.close)
        consumer = StoreConsumer(
            store,
            subjects,
            durable_prefix=durable_prefix(await store.identity()),
            events_retention_days=settings.EventsRetentionDays,
            events_max_bytes=settings.EventsMaxBytes,
            stream_replicas=settings.NATSStreamReplicas,
            lost_downtime=timedelta(seconds=settings.LostInRecoveryDowntimeSeconds),
        )
        await consumer.connect(servers, auth=auth)
        stack.push_async_callback(consumer.close)
        discovery = NatsRequester(subjects, signer=command_signer(settings))
        await discovery.connect(servers, auth=auth)
        stack.push_async_callback(discovery.close)
        operator_state = None
        if settings.EtcdEndpoints:
            etcd = EtcdClient(EtcdOptions.from_settings(settings))
            stack.push_async_callback(etcd.close)
            operator_state = OperatorState(etcd, prefix=settings.EtcdKeyPrefix)
        leader = LeaderWatch(subjects)
        await leader.connect(servers, auth=auth)
        stack.push_async_callback(leader.close)
        live = LiveHub(subjects)
        await live.connect(servers, auth=auth)
        stack.push_async_callback(live.close)
        promotions = Promotions(
            subjects,
            MasterChangeVerifier(settings.CommandSigningKey),
            lambda: leader.latest,
            on_applied=lambda promotion: live.receive("changed", changed_notice(promotion)),
        )
        await promotions.connect(servers, auth=auth)
        stack.push_async_callback(promotions.close)
        metrics = CollectorRegistry()
        metrics.register(ConsumerMetrics(consumer.stats))
        metrics.register(PromotionMetrics(promotions))
        app, tls_options = serving(
            create_app(
                ApiContext(
                    settings=settings,
                    store=store,
                    discovery=discovery,
                    leader=leader,
                    operator_state=operator_state,
                    live=live,
                    feed=consumer,
                    promotions=promotions,
                ),
                registry=metrics,
            ),
            settings,
        )
        host, port = parse_listen_address(settings.ListenAddress)
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "log_level": "warning",
            "http": "httptools",
            "lifespan": "off",
            # the client is the TCP peer: TrustedProxyCIDRs judges it, not X-Forwarded-For
            "proxy_headers": False,
            # on SIGTERM, requests in flight get this long, then connections are closed
            "timeout_graceful_shutdown": SHUTDOWN_GRACE_SECONDS,
        }
        server = ApiServer(uvicorn.Config(app, **(options | tls_options)), live=live)
        scheme = tls.api_scheme(settings)
        log.info("topology-api on %s://%s:%d (store: %s)", scheme, host, port, settings.BackendDB)
        leave_stop_signals_to_uvicorn()
        async with asyncio.TaskGroup() as group:
            consuming = group.create_task(consumer.run())
            purging = group.create_task(
                purge_history(store, keep=timedelta(days=settings.AuditPurgeDays))
            )
            await store.view()  # the fleet loaded: part of what the pacing freezes
            pacing = group.create_task(pace_garbage_collection())
            watching = group.create_task(leader.run())
            await server.serve()  # returns on SIGTERM/SIGINT (uvicorn's handlers)
            for task in (consuming, purging, pacing, watching):
                task.cancel()
    log.info("topology-api stopped")


def check_configuration(settings: Settings) -> None:
    """Beyond the settings' own checks: no open API on a non-loopback address, HTTPS files
    that can serve (ConfigError otherwise: start-up stops with one line)."""
    check_listen_policy(settings)
    tls.check_server_files(settings)


ENTRY = ServiceEntry(
    prog="orchestrator-topology-api",
    description="Store snapshots from NATS and serve the orchestrator-compatible REST API.",
    service="topology-api",
    log=log,
    failures=(BusError, StoreError, OSError),
    check=check_configuration,
    warnings=lambda settings: [*startup_warnings(settings), *signer_warnings(settings)],
    # uvloop: the event loop in C (with httptools, uvicorn's C HTTP parser, about a third more
    # requests per second than the pure-Python loop and h11)
    runner=uvloop.run,
)


def cli(argv: list[str] | None = None) -> int:
    return service_cli(ENTRY, serve, argv)


if __name__ == "__main__":
    sys.exit(cli())
