"""topology-api's requests on the bus: discovery verbs and topology commands (core NATS).

* ``orchestrator.v1.discovery.<verb>``: discover / refresh / forget, answered by discovery;
* ``orchestrator.v1.command.<operation>``: manual topology operations, answered only by the
  active recovery worker (issues 5 and 6 build that side; with no worker, the request finds no
  responder and the API says so).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from orchestrator_adapters.nats_client import connect_nats
from orchestrator_shared.bus import (
    CommandFailure,
    CommandReply,
    CommandRequest,
    DiscoveryFailure,
    DiscoveryRequest,
    DiscoveryVerb,
    Subjects,
)
from orchestrator_shared.command_signing import CommandSigner
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.nats_auth import ANONYMOUS, NatsAuth

REQUEST_TIMEOUT_SECONDS = 15.0  # above discovery's probe deadline (10 s by default)
COMMAND_TIMEOUT_SECONDS = 120.0  # a topology operation waits for replicas to catch up
BUS_CHECK_SECONDS = 1.0  # /api/health's round trip to NATS
BUS_CHECK_SUBJECT = "$JS.API.INFO"


class Unanswered(NamedTuple):
    """A request nobody answered: why, and whether that is because no responder was there
    (none running, or none answering in time) rather than the bus failing us."""

    error: str
    nobody: bool


class NatsRequester:
    def __init__(self, subjects: Subjects, *, signer: CommandSigner | None = None) -> None:
        """``signer``: how commands are signed (None: sent unsigned, which workers refuse
        unless they allow unsigned commands)."""
        self._subjects = subjects
        self._signer = signer
        self._nc: Client | None = None

    async def connect(self, servers: list[str], auth: NatsAuth = ANONYMOUS) -> None:
        self._nc = await connect_nats(servers, name="orchestrator-topology-api", auth=auth)

    async def bus_problem(self, wait: float = BUS_CHECK_SECONDS) -> str | None:
        """None when the NATS server answers a request within ``wait`` seconds, else what is
        wrong.

        A round trip, not the client's state: a partitioned link (packets dropped, nothing
        refused) keeps the TCP connection looking open until the client's own pings give up,
        minutes later. The request is ``$JS.API.INFO``, which the server itself answers (the
        API's NATS user may send it, deploy/nats); "no responders" is an answer too. Not
        ``flush()``: nats-py leaves a timed-out PING's future queued, and the late PONG then
        breaks its read loop."""
        if self._nc is None:
            return "not connected to NATS"
        if not self._nc.is_connected:
            return "disconnected from NATS; reconnecting"
        try:
            await self._nc.request(BUS_CHECK_SUBJECT, b"", timeout=wait)
        except NoRespondersError:
            return None  # the server answered (JetStream off): the bus is there
        except NatsTimeout:
            return f"NATS did not answer within {wait:g}s"
        except NatsError as exc:
            return f"NATS: {exc}"
        return None

    async def _request(
        self, subject: str, body: bytes, wait: float, who: str
    ) -> dict[str, Any] | Unanswered:
        if self._nc is None:
            return Unanswered("not connected to NATS", nobody=False)
        try:
            msg = await self._nc.request(subject, body, timeout=wait)
        except NoRespondersError:
            return Unanswered(f"no {who} is running", nobody=True)
        except NatsTimeout:
            return Unanswered(f"{who} did not answer within {wait:g}s", nobody=True)
        except NatsError as exc:
            return Unanswered(f"NATS: {exc}", nobody=False)
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def request(self, verb: str, key: InstanceKey) -> dict[str, Any]:
        """A discovery verb; the reply of discovery, or ``{"ok": False, "error": ...}``."""
        subject = self._subjects.discovery(DiscoveryVerb(verb))
        body = DiscoveryRequest(key=str(key)).to_json()
        reply = await self._request(subject, body, REQUEST_TIMEOUT_SECONDS, "discovery service")
        if isinstance(reply, Unanswered):
            return {"ok": False, "error": reply.error, "kind": DiscoveryFailure.UNAVAILABLE.value}
        return reply

    async def command(self, request: CommandRequest, *, wait: float | None = None) -> CommandReply:
        """A topology operation, forwarded to the active recovery worker; its answer within
        ``wait`` seconds (default :data:`COMMAND_TIMEOUT_SECONDS`)."""
        subject = self._subjects.command(request.operation)
        limit = COMMAND_TIMEOUT_SECONDS if wait is None else wait
        sent = request if self._signer is None else self._signer.sign(request)
        reply = await self._request(subject, sent.to_json(), limit, "active recovery worker")
        if isinstance(reply, Unanswered):
            # statuses as before the kinds: no worker there is 503, a failing bus 409
            kind = CommandFailure.UNAVAILABLE if reply.nobody else CommandFailure.FAILED
            return CommandReply(ok=False, operation=request.operation, error=reply.error, kind=kind)
        return CommandReply.model_validate(reply)

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.close()
