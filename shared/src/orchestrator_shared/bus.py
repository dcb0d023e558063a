"""Bus contracts: subjects, streams and the messages exchanged on NATS (DESIGN.md §2).

Subjects carry instance keys as subject tokens (see :mod:`orchestrator_shared.instance_key`:
``127.0.0.1:3306`` is the token ``127_0_0_1:3306``). Every message is JSON with a ``schema``
field. Only the definitions live here; connecting and publishing are the services' business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator_shared.instance_key import InstanceKey

SNAPSHOTS_STREAM = "ORCHESTRATOR_SNAPSHOTS"
EVENTS_STREAM = "ORCHESTRATOR_EVENTS"
DISCOVERY_QUEUE_GROUP = "orchestrator-discovery"


class DiscoveryVerb(StrEnum):
    DISCOVER = "discover"
    FORGET = "forget"
    REFRESH = "refresh"


@dataclass(frozen=True, slots=True)
class Subjects:
    """Subject names under one prefix (``orchestrator`` unless configured)."""

    prefix: str = "orchestrator"

    @property
    def root(self) -> str:
        return f"{self.prefix}.v1"

    def snapshot(self, key: InstanceKey) -> str:
        return f"{self.root}.snapshot.{key.subject_token}"

    @property
    def all_snapshots(self) -> str:
        return f"{self.root}.snapshot.*"

    def unreachable(self, key: InstanceKey) -> str:
        return f"{self.root}.unreachable.{key.subject_token}"

    @property
    def all_unreachable(self) -> str:
        return f"{self.root}.unreachable.*"

    def command(self, operation: str) -> str:
        return f"{self.root}.command.{operation}"

    def master_changed(self, cluster_token: str) -> str:
        """Where the recovery leader says a cluster's new master is writable (core NATS)."""
        return f"{self.root}.master.{cluster_token}"

    @property
    def all_master_changed(self) -> str:
        return f"{self.root}.master.*"

    def discovery(self, verb: DiscoveryVerb) -> str:
        return f"{self.root}.discovery.{verb.value}"

    @property
    def all_discovery(self) -> str:
        return f"{self.root}.discovery.*"

    @property
    def leader(self) -> str:
        return f"{self.root}.leader"

    @property
    def store_changed(self) -> str:
        """Core NATS (no stream): a topology-api process committed new snapshots."""
        return f"{self.root}.store.changed"

    @property
    def live_events(self) -> list[str]:
        """What the API's live stream follows with core subscriptions: committed snapshots,
        recovery, analysis and audit events."""
        return [
            self.store_changed,
            f"{self.root}.recovery.>",
            f"{self.root}.analysis.>",
            f"{self.root}.audit.>",
        ]

    @property
    def events(self) -> list[str]:
        """Subjects kept by the events stream."""
        return [
            f"{self.root}.unreachable.>",
            f"{self.root}.analysis.>",
            f"{self.root}.recovery.>",
            f"{self.root}.audit.>",
            f"{self.root}.leader",
        ]

    def dead_letter(self, service: str) -> str:
        """Where ``service`` keeps a message it could not handle (:mod:`.dead_letters`)."""
        return f"{self.root}.deadletter.{service}"

    @property
    def all_dead_letters(self) -> str:
        return f"{self.root}.deadletter.>"

    def key_of_snapshot_subject(self, subject: str) -> InstanceKey:
        return InstanceKey.from_subject_token(subject.rsplit(".", 1)[-1])


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    schema_version: Annotated[int, Field(alias="schema")] = 1

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class UnreachableEvent(_Message):
    """``orchestrator.v1.unreachable.<key>``: a (master) instance stopped answering."""

    key: str
    detected_at: datetime
    last_seen_at: datetime | None
    error: str
    # Replicas known at the time: discovery has just asked for a fresh probe of each.
    replica_keys: tuple[str, ...] = ()
    reporter: str = ""
    # Issue 17: when discovery's liveness link saw the master go (its waiting connection broke,
    # or the ping that failed was sent); ``detected_at`` minus this is the detection's own time.
    lost_at: datetime | None = None


class DiscoveryRequest(_Message):
    """Body of ``orchestrator.v1.discovery.<verb>``: which instance to act on."""

    key: str


class DiscoveryFailure(StrEnum):
    """What kind of ``ok=False`` a :class:`DiscoveryReply` is: the API's HTTP status follows from
    it (docs/bus.md), so it need not be read from the wording of ``error``."""

    BAD_REQUEST = "bad-request"  # not a valid host:port, or not a verb (400)
    HOST_REFUSED = "host-refused"  # the host filters forbid contacting it (403)
    UNREACHABLE = "unreachable"  # the instance did not answer the probe (502)
    UNAVAILABLE = "unavailable"  # discovery, or its bus, could not do it (503)


class DiscoveryReply(_Message):
    """Answer to a discovery request. ``ok=False`` carries a one-line ``error`` and, from a
    discovery service that knows the field, its ``kind``."""

    ok: bool
    verb: str
    key: str = ""
    error: str = ""
    # For discover/refresh: the snapshot the probe produced (as JSON object), if any.
    snapshot: dict[str, object] | None = None
    # None on success, and from a discovery service older than the field (its readers then fall
    # back to the wording of ``error``); a kind this version does not know is read as None too
    kind: DiscoveryFailure | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        """A newer service's kind is no reason to reject its whole answer."""
        return _known(DiscoveryFailure, value)


class CommandRequest(_Message):
    """Body of ``orchestrator.v1.command.<operation>``: a manual topology operation, answered
    by the active recovery worker only (topology-api forwards the API and CLI requests)."""

    operation: str
    instance: str = ""  # host:port the operation is about
    destination: str = ""  # host:port it targets (relocate below, takeover to, ...)
    cluster: str = ""
    arguments: dict[str, str] = {}
    requested_by: str = ""
    # the signed envelope (orchestrator_shared.command_signing, docs/bus.md "Signed commands"):
    # when it stops being valid, a random nonce (each is accepted once), and the HMAC-SHA256
    # of every other field; empty on an unsigned command
    expires_at: datetime | None = None
    nonce: str = ""
    signature: str = ""


class MasterChanged(_Message):
    """``orchestrator.v1.master.<cluster>``: the recovery leader made ``successor`` the
    writable master of ``cluster`` (named after ``failed``, its master until now), sent the
    moment the successor is writable, before the rest of the operation (core NATS, no stream).

    topology-api applies it to its view at once, until its snapshots show the change
    (:mod:`orchestrator_shared.master_change`). Signed like a command (``CommandSigningKey``)
    and fenced by the leader's ``fencing_token``: it redirects the applications that follow
    ``/api/master``."""

    cluster: str
    cluster_alias: str = ""
    failed: str
    successor: str
    # True for a graceful takeover: the old master stays, read-only, and will replicate from
    # the successor; False for a failover (the old master is dead)
    demoted_replicates: bool = False
    recovery_id: str
    command: str = ""  # the operation ("graceful-master-takeover-auto"); "" for a failover
    fencing_token: int
    worker: str
    promoted_at: datetime
    # the signed envelope, as a command's (docs/bus.md, "Signed commands")
    expires_at: datetime | None = None
    nonce: str = ""
    signature: str = ""


class CommandFailure(StrEnum):
    """What kind of ``ok=False`` a :class:`CommandReply` is: the API's HTTP status follows from
    it (docs/bus.md), so it need not be read from the wording of ``error``."""

    REFUSED = "refused"  # not done as asked: the request, the topology or a step says why (409)
    FAILED = "failed"  # not done: an unexpected error in the worker, or none could be sent (409)
    BUSY = "busy"  # not started: the worker has too many commands in progress (409)
    UNAVAILABLE = "unavailable"  # no leader answered, or it stopped leading mid-way (503)


class CommandReply(_Message):
    """Answer to a command. ``ok=False`` carries a one-line ``error`` and, from workers that
    know the field, its ``kind``; ``details`` is what the orchestrator-compatible route returns
    in its envelope's ``Details``."""

    ok: bool
    operation: str
    message: str = ""
    error: str = ""
    details: object = None
    # None on success, and from a worker older than the field (its readers then fall back to
    # the wording of ``error``); a kind this version does not know is read as None too
    kind: CommandFailure | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, value: object) -> object:
        """A newer worker's kind is no reason to reject its whole answer."""
        return _known(CommandFailure, value)


def _known(kinds: type[StrEnum], value: object) -> object:
    """``value`` unless it is a kind's text that ``kinds`` does not have (then None)."""
    if isinstance(value, str) and value not in {kind.value for kind in kinds}:
        return None
    return value


class StoreChanged(_Message):
    """``orchestrator.v1.store.changed``: a topology-api process has just committed snapshots
    of these instances (a read of the store now sees them). Every API process sharing the
    database hears it, so each can tell its live-stream clients to refetch."""

    clusters: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    writer: str = ""  # the process that wrote them (host:pid)


class LeaderIdentity(BaseModel):
    """A recovery worker as it names itself in etcd (the leader key's value, DESIGN.md §3)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    host: str
    pid: int
    started_at: datetime


class LeaderEvent(_Message):
    """``orchestrator.v1.leader``: the active recovery worker changed (published by
    orchestrator-coordinator). ``leader`` is None while no worker leads; ``fencing_token`` is
    the leader key's create_revision (0 when there is no leader)."""

    leader: LeaderIdentity | None
    fencing_token: int = 0
    since: datetime | None = None  # when the leader won (``elected_at`` in its key)
    observed_at: datetime
    reporter: str = ""
