"""``orchestrator-coordinator --config FILE``: reports the recovery election.

It does not campaign: recovery workers do, in-process (:mod:`orchestrator_adapters.election`).
This service watches the leadership keys in etcd and reports them: ``/status`` (JSON), the
probes ``/health`` and ``/ready``, and ``/metrics`` on ``CoordinatorListenAddress``, and
``orchestrator.v1.leader`` events on NATS.

Lifecycle: settings (a bad value stops start-up with one line, exit 2) → etcd (no answer within
a few seconds stops start-up with one line naming ``EtcdEndpoints``, exit 1) → NATS → HTTP →
the observer loop, until SIGTERM/SIGINT, which closes everything and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import time
from contextlib import AsyncExitStack

import uvicorn

from orchestrator_adapters.election import STARTUP_TIMEOUT_SECONDS, ElectionOptions
from orchestrator_adapters.entrypoint import (
    ServiceEntry,
    leave_stop_signals_to_uvicorn,
    service_cli,
)
from orchestrator_adapters.etcd import EtcdClient, EtcdError, EtcdOptions, EtcdUnavailable
from orchestrator_coordinator.metrics import CoordinatorMetrics
from orchestrator_coordinator.observer import ElectionObserver, ElectionStatus
from orchestrator_coordinator.publisher import LeaderEventPublisher
from orchestrator_coordinator.web import create_app, why_not_ready
from orchestrator_shared.bus import Subjects
from orchestrator_shared.config import Settings, parse_listen_address
from orchestrator_shared.errors import BusError
from orchestrator_shared.etcd.leadership import LeadershipKeys
from orchestrator_shared.nats_auth import nats_auth

log = logging.getLogger("orchestrator_coordinator")


async def wait_for_etcd(client: EtcdClient, keys: LeadershipKeys, *, within: float) -> None:
    """A linearizable read of the leadership keys (the only ones an etcd user for orchestrator
    may read) within ``within`` seconds, else EtcdUnavailable naming the endpoint list."""
    deadline = time.monotonic() + within
    while True:
        try:
            await client.get_prefix(keys.root)
            return
        except EtcdUnavailable as exc:
            if time.monotonic() >= deadline:
                raise EtcdUnavailable(
                    f"EtcdEndpoints: no etcd answered within {within:g} s "
                    f"({', '.join(client.options.endpoints)}): {exc}"
                ) from None
            await asyncio.sleep(0.2)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made here so a taken port is a one-line start-up error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise OSError(
            f"CoordinatorListenAddress: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    return listener


async def run(settings: Settings) -> None:
    options = ElectionOptions.from_settings(settings)
    metrics = CoordinatorMetrics()
    async with AsyncExitStack() as stack:
        client = EtcdClient(EtcdOptions.from_settings(settings))
        stack.push_async_callback(client.close)
        keys = LeadershipKeys(settings.EtcdKeyPrefix)
        await wait_for_etcd(client, keys, within=STARTUP_TIMEOUT_SECONDS)
        publisher = LeaderEventPublisher(
            Subjects(settings.NATSSubjectPrefix),
            events_retention_days=settings.EventsRetentionDays,
            events_max_bytes=settings.EventsMaxBytes,
            stream_replicas=settings.NATSStreamReplicas,
            reporter=f"{socket.gethostname()}:{os.getpid()}",
            metrics=metrics,
        )
        await publisher.connect(settings.nats_servers_or_local, nats_auth(settings))
        stack.push_async_callback(publisher.close)

        async def on_change(previous: ElectionStatus, status: ElectionStatus) -> None:
            metrics.observe(previous, status)
            await publisher.observe(previous, status)

        observer = ElectionObserver(
            client,
            keys,
            lease_ttl=options.lease_ttl,
            poll_interval=options.poll_interval,
            on_change=on_change,
        )
        host, port = parse_listen_address(settings.CoordinatorListenAddress)
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(
                    lambda: observer.status,
                    metrics,
                    ready=lambda: why_not_ready(
                        observer.status, nats_connected=publisher.is_connected
                    ),
                ),
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )
        leave_stop_signals_to_uvicorn()
        log.info(
            "coordinator on http://%s:%d watching %s/recovery/ in etcd %s",
            host,
            port,
            settings.EtcdKeyPrefix,
            ", ".join(settings.etcd_endpoints_or_local),
        )
        listener = bind(host, port)
        stack.callback(listener.close)
        async with asyncio.TaskGroup() as group:
            observing = group.create_task(observer.run())
            # returns on SIGTERM/SIGINT (uvicorn's handlers)
            await server.serve(sockets=[listener])
            observing.cancel()
    log.info("coordinator stopped")


ENTRY = ServiceEntry(
    prog="orchestrator-coordinator",
    description="Report the recovery leadership held in etcd: /status, /metrics, events.",
    service="coordinator",
    log=log,
    failures=(EtcdError, BusError, OSError),
)


def cli(argv: list[str] | None = None) -> int:
    return service_cli(ENTRY, run, argv)


if __name__ == "__main__":
    sys.exit(cli())
