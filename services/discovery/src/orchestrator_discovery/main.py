"""``orchestrator-discovery --config FILE``: the discovery service's process.

Lifecycle: settings (a bad value stops start-up with one line) → NATS and its streams → the
metrics endpoint → the scheduler and the request subscription, until SIGTERM/SIGINT, which
drains NATS and closes every MySQL connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
import sys
from contextlib import AsyncExitStack, suppress

from orchestrator_adapters.entrypoint import ServiceEntry, cancel_on_stop_signals, service_cli
from orchestrator_adapters.observability import serve_observability
from orchestrator_adapters.probe import ConnectionPool, LivenessLink, ProbeOptions, Prober
from orchestrator_discovery.metrics import DiscoveryMetrics
from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_discovery.service import DiscoveryOptions, DiscoveryService
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import BusError
from orchestrator_shared.nats_auth import nats_auth, redact_urls

log = logging.getLogger("orchestrator_discovery")


def _raise_file_limit() -> None:
    """Thousands of instances need thousands of sockets: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_service(settings: Settings, bus: NatsBus, metrics: DiscoveryMetrics) -> DiscoveryService:
    options = ProbeOptions.from_settings(settings)
    prober = Prober(options, ConnectionPool(options))
    reporter = f"{socket.gethostname()}:{os.getpid()}"
    return DiscoveryService(
        options=DiscoveryOptions.from_settings(settings, reporter=reporter),
        prober=prober,
        bus=bus,
        liveness=lambda key: LivenessLink(
            key, options, timeout=settings.MasterLivenessTimeoutSeconds
        ),
        metrics=metrics,
    )


async def run(settings: Settings) -> None:
    metrics = DiscoveryMetrics()
    service_ref: list[DiscoveryService] = []

    async def on_reconnect() -> None:
        if service_ref:
            asyncio.get_running_loop().create_task(service_ref[0].republish_all())

    bus = NatsBus(
        Subjects(settings.NATSSubjectPrefix),
        events_retention_days=settings.EventsRetentionDays,
        events_max_bytes=settings.EventsMaxBytes,
        stream_replicas=settings.NATSStreamReplicas,
        on_reconnect=on_reconnect,
    )
    async with AsyncExitStack() as stack:
        await bus.connect(
            settings.nats_servers_or_local, name="orchestrator-discovery", auth=nats_auth(settings)
        )
        stack.push_async_callback(bus.close)
        running = asyncio.Event()

        def ready() -> str:
            if not running.is_set():
                return "starting"
            return "" if bus.is_connected else "not connected to NATS"

        if settings.DiscoveryMetricsListenAddress:
            serve_observability(
                stack,
                settings.DiscoveryMetricsListenAddress,
                registry=metrics.registry,
                ready=ready,
            )
        service = build_service(settings, bus, metrics)
        service_ref.append(service)
        await bus.serve_requests(service.handle_request)
        running.set()
        log.info(
            "discovery running: %d seed(s), poll every %gs, NATS %s",
            len(settings.DiscoverySeeds),
            settings.InstancePollSeconds,
            redact_urls(settings.nats_servers_or_local),
        )
        await service.run()


async def _main_async(settings: Settings) -> None:
    _raise_file_limit()
    cancel_on_stop_signals()
    with suppress(asyncio.CancelledError):
        await run(settings)
    log.info("discovery stopped")


ENTRY = ServiceEntry(
    prog="orchestrator-discovery",
    description="Probe MySQL/MariaDB instances and publish their snapshots to NATS.",
    service="discovery",
    log=log,
    failures=(BusError, OSError),  # OSError: e.g. the metrics port is taken
)


def cli(argv: list[str] | None = None) -> int:
    return service_cli(ENTRY, _main_async, argv)


if __name__ == "__main__":
    sys.exit(cli())
