"""Asks discovery to discover, refresh or forget an instance (core NATS request/reply)."""

from __future__ import annotations

import json
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from orchestrator_shared.bus import DiscoveryRequest, DiscoveryVerb, Subjects
from orchestrator_shared.errors import BusError
from orchestrator_shared.instance_key import InstanceKey

REQUEST_TIMEOUT_SECONDS = 15.0  # above discovery's probe deadline (10 s by default)


class NatsDiscoveryRequester:
    def __init__(self, subjects: Subjects) -> None:
        self._subjects = subjects
        self._nc: Client | None = None

    async def connect(self, servers: list[str]) -> None:
        try:
            self._nc = await nats.connect(
                servers=servers,
                name="orchestrator-topology-api",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
            )
        except (NatsError, OSError) as exc:
            raise BusError(f"cannot connect to NATS at {', '.join(servers)}: {exc}") from None

    async def request(self, verb: str, key: InstanceKey) -> dict[str, Any]:
        if self._nc is None:
            raise BusError("not connected to NATS")
        subject = self._subjects.discovery(DiscoveryVerb(verb))
        body = DiscoveryRequest(key=str(key)).to_json()
        try:
            msg = await self._nc.request(subject, body, timeout=REQUEST_TIMEOUT_SECONDS)
        except NoRespondersError:
            return {"ok": False, "error": "no discovery service is running"}
        except NatsTimeout:
            return {
                "ok": False,
                "error": f"discovery did not answer within {REQUEST_TIMEOUT_SECONDS:g}s",
            }
        except NatsError as exc:
            return {"ok": False, "error": f"NATS: {exc}"}
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()
