"""Throwaway etcd: one member (``EtcdServer``) or a 3/5-member cluster (``EtcdCluster``).

Every member listens on loopback with its own client and peer ports and its own data directory.
Raft timing is shortened for tests (heartbeat 100 ms, election 500 ms), so a lost leader is
replaced in about a second. A member that was stopped, killed or restarted rejoins from its data
directory with the same name and URLs (the ``--initial-cluster*`` flags only matter the first time).

Readiness is etcd's ``/health``: true only while the cluster has a leader. ``restart(wait=True)``
of a member therefore needs a quorum; to bring back a majority that is down, restart the members
with ``wait=False`` and then call ``EtcdCluster.wait_healthy()``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.harness.ports import LOOPBACK, free_ports
from tests.harness.process import HarnessError, ManagedProcess, find_binary, http_get, wait_gone

BINARY = "etcd"
HEARTBEAT_MS = 100
ELECTION_MS = 500


def find_etcd() -> Path:
    found = find_binary(BINARY)
    if found is None:
        raise FileNotFoundError(f"{BINARY} not found on PATH")
    return found


def is_healthy(endpoint: str) -> bool:
    """etcd's own health check: the member answers and the cluster has a leader."""
    answer = http_get(f"{endpoint}/health")
    if answer is None or answer[0] != 200:
        return False
    try:
        return bool(json.loads(answer[1]).get("health") == "true")
    except ValueError:
        return False


class EtcdMember(ManagedProcess):
    """One etcd member; the cluster it belongs to is fixed at construction."""

    def __init__(
        self,
        *,
        member_name: str,
        client_port: int,
        peer_port: int,
        initial_cluster: str,
        cluster_token: str,
        binary: Path,
    ) -> None:
        super().__init__(name=f"etcd-{member_name}")
        self.member_name = member_name
        self.port = client_port
        self.peer_port = peer_port
        self.initial_cluster = initial_cluster
        self.cluster_token = cluster_token
        self.binary = binary

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://{LOOPBACK}:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--name", self.member_name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial_cluster,
            "--initial-cluster-token", self.cluster_token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS),
            "--election-timeout", str(ELECTION_MS),
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        # ETCD_* variables are flags to etcd; ones from the developer's shell must not leak in.
        return {key: value for key, value in os.environ.items() if not key.startswith("ETCD")}

    def probe(self) -> bool:
        return is_healthy(self.endpoint)


class EtcdServer(EtcdMember):
    """A single-member etcd cluster on fresh loopback ports."""

    def __init__(self, *, binary: Path | None = None) -> None:
        client_port, peer_port = free_ports(2)
        super().__init__(
            member_name="solo",
            client_port=client_port,
            peer_port=peer_port,
            initial_cluster=f"solo=http://{LOOPBACK}:{peer_port}",
            cluster_token=f"harness-{uuid.uuid4().hex[:12]}",
            binary=binary or find_etcd(),
        )

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint]


class EtcdCluster:
    """``size`` etcd members on loopback, each controllable alone via ``members[i]``."""

    def __init__(self, *, size: int = 3, binary: Path | None = None) -> None:
        if size < 1:
            raise ValueError("an etcd cluster needs at least one member")
        etcd = binary or find_etcd()
        ports = free_ports(2 * size)
        names = [f"m{index}" for index in range(size)]
        initial = ",".join(
            f"{name}=http://{LOOPBACK}:{ports[2 * index + 1]}" for index, name in enumerate(names)
        )
        token = f"harness-{uuid.uuid4().hex[:12]}"
        self.members: list[EtcdMember] = [
            EtcdMember(
                member_name=name,
                client_port=ports[2 * index],
                peer_port=ports[2 * index + 1],
                initial_cluster=initial,
                cluster_token=token,
                binary=etcd,
            )
            for index, name in enumerate(names)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def is_running(self) -> bool:
        return any(member.is_running for member in self.members)

    def pids(self) -> list[int]:
        return [pid for member in self.members for pid in member.pids()]

    def start(self) -> None:
        """Start every member at once (a new cluster needs a quorum to elect a leader)."""
        for member in self.members:
            member.start(wait=False)
        for member in self.members:
            member.wait_ready()

    def wait_healthy(
        self, timeout: float = 15.0, *, members: Sequence[EtcdMember] | None = None
    ) -> None:
        """Block until every running member (or the given ones) reports a leader."""
        deadline = time.monotonic() + timeout
        for member in self.members if members is None else members:
            if member.is_running:
                member.wait_ready(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        pids = self.pids()
        errors: list[BaseException] = []
        for member in self.members:
            try:
                member.close()
            except BaseException as error:  # close the others anyway
                errors.append(error)
        if errors:
            raise errors[0]
        survivors = wait_gone(pids)
        if survivors:
            raise HarnessError(f"etcd processes {survivors} survived close()")

    def __repr__(self) -> str:
        return f"<EtcdCluster {', '.join(repr(member) for member in self.members)}>"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
