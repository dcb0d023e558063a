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
from nats.errors import AuthorizationError
from nats.errors import Error as NatsError

from orchestrator_shared.errors import BusError
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth, redact_urls, scrub

log = logging.getLogger(__name__)


async def connect_nats(
    servers: Sequence[str],
    *,
    name: str,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    auth: NatsAuth = ANONYMOUS,
) -> Client:
    """A client that reconnects forever (0.5 s apart); ``on_reconnect`` runs after each;
    ``auth`` its credentials and TLS (:func:`orchestrator_shared.nats_auth.nats_auth`). No
    password (of ``auth`` or a ``user:pass@`` URL) appears in what it logs or raises."""

    async def disconnected() -> None:
        log.warning("%s: NATS disconnected; waiting for it", name)

    async def reconnected() -> None:
        log.info("%s: NATS reconnected", name)
        if on_reconnect is not None:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        # refused credentials would otherwise retry silently forever, and a publish the
        # server's permissions drop would vanish: say so
        text = scrub(str(exc) or exc.__class__.__name__, servers, auth.secrets)
        lowered = text.lower()
        refused = isinstance(exc, AuthorizationError) or any(
            word in lowered for word in ("authorization", "permissions violation")
        )
        if callback_failed(exc):
            # a subscription callback raised: a bug in the service, never routine
            log.error("%s: a NATS message handler failed: %s", name, text, exc_info=exc)
            return
        level = logging.WARNING if refused else logging.DEBUG
        log.log(level, "%s: NATS client error: %s", name, text)

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
            **auth.connect_options(),
        )
    except (NatsError, OSError) as exc:
        problem = scrub(str(exc) or exc.__class__.__name__, servers, auth.secrets)
        raise BusError(f"cannot connect to NATS at {redact_urls(servers)}: {problem}") from None


def callback_failed(exc: BaseException) -> bool:
    """Whether nats-py's error callback got an exception raised by one of our subscription
    callbacks (anything but its own errors and the network's: those are routine while NATS
    restarts, and reconnection is logged on its own)."""
    return not isinstance(exc, NatsError | OSError | TimeoutError | EOFError)
