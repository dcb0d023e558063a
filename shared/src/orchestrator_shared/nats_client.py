"""Connecting to NATS the way every service does: reconnect forever, log the outages.

The one piece of bus I/O in ``shared``: each service's adapter (discovery's publisher,
topology-api's consumer and requester) connects through here, and nats-py's connection errors
become :class:`BusError` at this boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from orchestrator_shared.errors import BusError

log = logging.getLogger(__name__)


async def connect_nats(
    servers: Sequence[str],
    *,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> Client:
    """A client that reconnects forever (0.5 s apart); ``on_reconnect`` runs after each."""

    async def disconnected() -> None:
        log.warning("%s: NATS disconnected; waiting for it", name)

    async def reconnected() -> None:
        log.info("%s: NATS reconnected", name)
        if on_reconnect is not None:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        log.debug("%s: NATS client error: %s", name, exc)

    try:
        return await nats.connect(
            servers=list(servers),
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            # drain() gives up by itself after this (a timeout around it from outside would
            # cancel nats-py's internal gather and leave its exception unretrieved)
            drain_timeout=5,
            allow_reconnect=True,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
    except (NatsError, OSError) as exc:
        raise BusError(f"cannot connect to NATS at {', '.join(servers)}: {exc}") from None
