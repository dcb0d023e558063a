"""The leadership keys in etcd (DESIGN.md §3) and the JSON stored in them.

``<prefix>/recovery/leader``
    held by the active recovery worker, bound to its lease; its ``create_revision`` is the
    fencing token. Value: the worker's identity plus ``elected_at`` (when it won).
``<prefix>/recovery/members/<id>``
    one per live recovery worker, bound to its lease. Value: the worker's identity.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from orchestrator_shared.bus import LeaderIdentity


@dataclass(frozen=True, slots=True)
class LeadershipKeys:
    prefix: str = "/orchestrator"

    @property
    def root(self) -> bytes:
        return f"{self.prefix}/recovery/".encode()

    @property
    def leader(self) -> bytes:
        return f"{self.prefix}/recovery/leader".encode()

    @property
    def members(self) -> bytes:
        return f"{self.prefix}/recovery/members/".encode()

    def member(self, worker_id: str) -> bytes:
        return self.members + worker_id.encode()


def local_identity(worker_id: str | None = None) -> LeaderIdentity:
    """This process as a recovery worker: ``<host>-<pid>-<random>`` unless an id is given."""
    host = socket.gethostname()
    pid = os.getpid()
    return LeaderIdentity(
        id=worker_id or f"{host}-{pid}-{uuid.uuid4().hex[:6]}",
        host=host,
        pid=pid,
        started_at=datetime.now(UTC),
    )


def encode_leader(identity: LeaderIdentity, elected_at: datetime) -> bytes:
    document = identity.model_dump(mode="json")
    document["elected_at"] = elected_at.isoformat()
    return json.dumps(document, separators=(",", ":")).encode()


def encode_member(identity: LeaderIdentity) -> bytes:
    return identity.model_dump_json().encode()


def decode_identity(value: bytes) -> LeaderIdentity | None:
    """The identity in a leader or member key; None when the value is not one (hand-written)."""
    try:
        return LeaderIdentity.model_validate_json(value)
    except ValidationError:
        return None


def decode_elected_at(value: bytes) -> datetime | None:
    try:
        document = json.loads(value)
        return datetime.fromisoformat(str(document["elected_at"]))
    except (ValueError, KeyError, TypeError):
        return None
