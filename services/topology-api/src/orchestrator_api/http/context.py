"""What the routes work with: settings, the store, the discovery requester, the clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request

from orchestrator_api.http.errors import ApiError, NotFound
from orchestrator_api.http.payloads import InstanceAnswers
from orchestrator_api.live import Listener
from orchestrator_api.store import AuditEntry, Store
from orchestrator_api.store.view import FleetView
from orchestrator_shared.analysis import CoordinatesSeen
from orchestrator_shared.bus import (
    CommandFailure,
    CommandReply,
    CommandRequest,
    DiscoveryFailure,
    LeaderEvent,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import InvalidInstanceKey, OrchestratorError
from orchestrator_shared.etcd.recovery import OperatorState
from orchestrator_shared.host_policy import HostPolicy
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.topology import TopologyInstance


class LeaderSource(Protocol):
    """The latest leadership report (:class:`orchestrator_api.leadership.LeaderWatch`)."""

    @property
    def latest(self) -> LeaderEvent | None: ...


class LiveSource(Protocol):
    """The open streams of ``GET /api/stream`` (:class:`orchestrator_api.live.LiveHub`)."""

    def listen(self) -> Listener: ...
    def forget(self, listener: Listener) -> None: ...


class PromotionSource(Protocol):
    """New masters the recovery leader announced, laid over the store's view
    (:class:`orchestrator_api.promotions.Promotions`)."""

    def apply(self, view: FleetView) -> FleetView: ...


class BusRequester(Protocol):
    """Requests on the bus (see :mod:`orchestrator_api.discovery_client`)."""

    async def request(self, verb: str, key: InstanceKey) -> dict[str, Any]: ...
    async def command(
        self, request: CommandRequest, *, wait: float | None = None
    ) -> CommandReply: ...
    async def bus_problem(self) -> str | None:
        """None when the bus answers now, else why not (``/api/health``'s ``BusError``)."""
        ...


class StoreFeed(Protocol):
    """What keeps the store up to date (:class:`orchestrator_api.store.consumer.StoreConsumer`),
    as ``/ready`` sees it."""

    @property
    def is_connected(self) -> bool: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiContext:
    settings: Settings
    store: Store
    discovery: BusRequester | None = None
    clock: Callable[[], datetime] = field(default=utcnow)
    # encoded answers, with the settings' ReasonableReplicationLagSeconds
    answers: InstanceAnswers = field(init=False)
    leader: LeaderSource | None = None
    # downtime and promotion rules mirrored where the recovery workers read them (etcd)
    operator_state: OperatorState | None = None
    # since when each instance's binlog coordinates stayed the same, as the analyses of this
    # process saw them (LockedSemiSyncMaster needs a master that stopped moving)
    binlog_history: dict[InstanceKey, CoordinatesSeen] = field(default_factory=dict)
    # since when each Galera node has been desynced, as the analyses of this process saw it
    # (GaleraNodeDesyncedTooLong needs a node desynced for long enough)
    desynced_since: dict[InstanceKey, datetime] = field(default_factory=dict)
    # the live stream's hub (GET /api/stream); None: no stream (503)
    live: LiveSource | None = None
    # the bus consumer writing the store; None: nothing feeds it (``/ready`` answers 503)
    feed: StoreFeed | None = None
    # DiscoveryAllowedHostnameFilters and DiscoveryIgnoreHostnameFilters
    hosts: HostPolicy = field(init=False)
    # masters the recovery leader announced before the snapshots show them; None: none
    promotions: PromotionSource | None = None

    def __post_init__(self) -> None:
        self.answers = InstanceAnswers(reasonable_lag=self.settings.ReasonableReplicationLagSeconds)
        self.hosts = HostPolicy.from_settings(self.settings, discovery=True)

    def check_discoverable(self, key: InstanceKey) -> None:
        """403 for an instance discovery is not to contact: refused here, so the request is
        not even sent (discovery refuses it too, should its settings say otherwise)."""
        refusal = self.hosts.refusal(key)
        if refusal:
            raise ApiError(403, f"{key}: {refusal}")

    async def tell_recovery(self, change: Callable[[OperatorState], Awaitable[None]]) -> None:
        """Mirror an operator's change for the recovery workers; the store has it already."""
        if self.operator_state is None:
            return
        try:
            await change(self.operator_state)
        except OrchestratorError as exc:
            raise ApiError(
                503,
                f"stored, but the recovery workers could not be told (etcd: {exc}); "
                "automated recovery does not see this change until it is made again",
            ) from None

    async def audit(
        self,
        kind: str,
        message: str,
        *,
        key: InstanceKey | None = None,
        cluster: str = "",
        user: str = "",
    ) -> None:
        """One entry of the audit log (``/api/audit``), now."""
        await self.store.append_audit(
            [
                AuditEntry(
                    at=self.clock(),
                    type=kind,
                    message=message,
                    key=key,
                    cluster=cluster,
                    user=user,
                )
            ]
        )

    async def view(self) -> FleetView:
        """The store's view, with the new masters the recovery leader just announced."""
        view = await self.store.view()
        return view if self.promotions is None else self.promotions.apply(view)

    @staticmethod
    def key(host: str, port: str | int) -> InstanceKey:
        try:
            return InstanceKey.parse(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
        except InvalidInstanceKey as exc:
            raise ApiError(400, str(exc)) from None

    async def instance(self, host: str, port: str | int) -> tuple[FleetView, TopologyInstance]:
        key = self.key(host, port)
        view = await self.view()
        node = view.instance(key)
        if node is None:
            raise NotFound(f"Cannot read instance: {key}")
        return view, node

    async def cluster_name(self, hint: str) -> tuple[FleetView, str]:
        view = await self.view()
        name = view.resolve_cluster(hint)
        if name is None:
            raise NotFound(f"Unable to determine cluster name. clusterHint={hint}")
        return view, name

    async def ask_discovery(self, verb: str, key: InstanceKey) -> dict[str, Any]:
        if verb != "forget":
            self.check_discoverable(key)
        if self.discovery is None:
            raise ApiError(503, "discovery is not reachable (no NATS connection)")
        reply = await self.discovery.request(verb, key)
        if not reply.get("ok"):
            raise ApiError(discovery_status(reply), str(reply["error"]))
        return reply

    async def forward(self, request: CommandRequest, *, wait: float | None = None) -> CommandReply:
        """Send a topology operation to the active recovery worker (``wait``: seconds for its
        answer, the requester's default when None); errors as API errors."""
        if self.discovery is None:
            raise ApiError(503, "the bus is not reachable (no NATS connection)")
        reply = await self.discovery.command(request, wait=wait)
        if reply.ok:
            return reply
        if command_status(reply) == 503:
            raise ApiError(503, f"{request.operation}: {reply.error}")
        raise ApiError(409, f"{request.operation} refused: {reply.error}")


# the status of each kind of failed command (docs/bus.md): only a missing leader is 503
_COMMAND_STATUS = {
    CommandFailure.REFUSED: 409,
    CommandFailure.FAILED: 409,
    CommandFailure.BUSY: 409,
    CommandFailure.UNAVAILABLE: 503,
}


def command_status(reply: CommandReply) -> int:
    """The HTTP status of a failed command's reply, from its ``kind``."""
    if reply.kind is not None:
        return _COMMAND_STATUS[reply.kind]
    # No kind: a recovery worker of the previous version (during a rolling upgrade) wrote the
    # reply; its status is read from the wording of the error as that version's API did.
    # Remove once no such worker can answer.
    if reply.error.startswith(("no active recovery worker", "active recovery worker did")):
        return 503
    return 409


# the status of each kind of failed discovery request (docs/bus.md)
_DISCOVERY_STATUS = {
    DiscoveryFailure.BAD_REQUEST: 400,
    DiscoveryFailure.HOST_REFUSED: 403,  # the host filters: discovery will not contact it
    DiscoveryFailure.UNREACHABLE: 502,  # the instance did not answer: not the client's mistake
    DiscoveryFailure.UNAVAILABLE: 503,
}
_DISCOVERY_KINDS = frozenset(kind.value for kind in DiscoveryFailure)


def discovery_status(reply: Mapping[str, Any]) -> int:
    """The HTTP status of a failed discovery reply, from its ``kind``."""
    kind = reply.get("kind")
    if kind in _DISCOVERY_KINDS:
        return _DISCOVERY_STATUS[DiscoveryFailure(kind)]
    # No kind: a discovery service of the previous version (during a rolling upgrade) wrote the
    # reply; its status is read from the wording of the error as that version's API did.
    # Remove once no such service can answer.
    error = str(reply.get("error", ""))
    if error.startswith("invalid instance key"):
        return 400
    if error.startswith("refused:"):
        return 403
    if error.startswith("cannot probe"):
        return 502
    return 503


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(context_of)]
