"""Every orchestrator-client command this API serves (issue 10, section 2), run twice each:

* as orchestrator-client runs it (:mod:`tests.integration.orchestrator_client`): its exact
  paths, with an HTTP client that does not follow redirects (curl without ``-L``), its output
  filters; a redirect, an empty or non-JSON answer, or an empty output where orchestrator
  prints something fails the test;
* as ``orchestrator -c`` runs it: it must ask for the same paths and print the same thing.
  Commands that change something are not run twice: our CLI gets the answer the first run got
  (its request must still be the same path); reads run for real.

Against the whole stack as separate processes: a 4-node MariaDB GTID sandbox (one for the
module), nats-server, etcd, discovery, the coordinator, two recovery workers, and topology-api
under ``URLPrefix`` ``/orchestrator`` (so the client and the CLI use
``http://host:port/orchestrator``). The commands run in an order that keeps the sandbox a
working topology; the ones that break it (forced failovers, reset-replica, forget-cluster)
come last.
"""

from __future__ import annotations

import contextlib
import io
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from orchestrator_cli.client import run_client
from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.config import REPLICATION_PASSWORD, REPLICATION_USER
from orchestrator_shared.command_signing import generate_key
from tests import harness
from tests.harness.ports import free_port
from tests.integration.api_support import replica_row
from tests.integration.orchestrator_client import (
    CLIENT,
    ClientRun,
    parse,
    printed,
    run_client_command,
)
from tests.integration.stack_support import TOPOLOGY
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import start, stop

pytestmark = pytest.mark.integration

PREFIX = "/orchestrator"
ALIAS = "compat"


@dataclass
class Stack:
    sandbox: Sandbox
    url: str  # what ORCHESTRATOR_API / --api is given
    http: httpx.Client  # follows no redirect
    processes: list[subprocess.Popen[bytes]]  # the stack's, discovery first

    def get(self, path: str) -> Any:
        """An API answer (None when it is not a 200)."""
        try:
            answer = self.http.get(f"{self.url}/api/{path}")
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def wait(
        self,
        check: Callable[[], Any],
        what: str,
        timeout: float = 30.0,
        show: Callable[[], Any] | None = None,
    ) -> Any:
        try:
            return wait_until(check, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {show()!r}" if show else str(exc)) from None


@pytest.fixture(scope="module")
def stack(
    module_sandbox_factory: Callable[..., Sandbox], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    sandbox = module_sandbox_factory(nodes=4)
    directory: Path = tmp_path_factory.mktemp("client-stack")
    nats = harness.start_nats()
    etcd = harness.start_etcd()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        common = {
            **TOPOLOGY,
            "NATSServers": [nats.url],
            "EtcdEndpoints": [etcd.endpoint],
            "InstancePollSeconds": 1,
            "CommandSigningKey": generate_key(),  # the API signs commands, the workers verify
            "DetectClusterAliasQuery": f"SELECT '{ALIAS}'",
            "DetectDataCenterQuery": "SELECT 'east'",
            "ReplicationCredentialsQuery": (
                f"SELECT '{REPLICATION_USER}' AS user, '{REPLICATION_PASSWORD}' AS password"
            ),
        }
        settings = {
            "orchestrator_discovery.main": {
                "DiscoverySeeds": [sandbox.master.key],
                "DiscoveryMetricsListenAddress": "",
            },
            "orchestrator_coordinator.main": {
                "CoordinatorListenAddress": f"127.0.0.1:{free_port()}"
            },
            "orchestrator_api.main": {
                "ListenAddress": f"127.0.0.1:{port}",
                "URLPrefix": PREFIX,
                "SQLite3DataFile": str(directory / "orchestrator.sqlite3"),
            },
        }
        for module, extra in settings.items():
            processes.append(start(module, {**common, **extra}, directory))
        for n in (1, 2):
            (directory / f"worker-{n}").mkdir()
            processes.append(start("orchestrator_recovery.main", common, directory / f"worker-{n}"))
        with httpx.Client(timeout=150, follow_redirects=False) as http:
            ready = Stack(sandbox, f"http://127.0.0.1:{port}{PREFIX}", http, processes)
            ready.wait(lambda: len(ready.get(f"cluster/{ALIAS}") or []) == 4, "4 instances", 60)
            ready.wait(lambda: ready.get("raft-state") == "Leader", "a leading worker", 60)
            ready.wait(
                lambda: [m["DataCenter"] for m in ready.get("masters") or []] == ["east"], "the DC"
            )
            yield ready
    finally:
        outputs = [stop(process) for process in reversed(processes)]
        nats.close()
        etcd.close()
    for code, output in outputs:
        assert code == 0, output
        assert "Traceback" not in output, output


# --- running both -----------------------------------------------------------------------------


class Recording(httpx.BaseTransport):
    """Our CLI's requests: forwarded to the API, or answered with what orchestrator-client
    got (``replay``), so that a change is not made twice."""

    def __init__(self, replay: list[tuple[int, bytes]] | None) -> None:
        self.replay = replay
        self.paths: list[str] = []
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.raw_path.decode())
        if self.replay is None:
            return self._inner.handle_request(request)
        if not self.replay:
            return httpx.Response(599, json={"Code": "ERROR", "Message": "an extra request"})
        status, body = self.replay.pop(0)
        return httpx.Response(status, content=body, headers={"content-type": "application/json"})

    def close(self) -> None:
        self._inner.close()


@dataclass
class Table:
    stack: Stack
    covered: set[str] = field(default_factory=set)

    def ours(
        self, argv: Sequence[str], replay: list[tuple[int, bytes]] | None
    ) -> tuple[int, str, str, list[str]]:
        transport = Recording(replay)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = run_client(
                [*argv, "--api", self.stack.url], out=out, transport=transport, environ={}
            )
        transport.close()
        api = f"{PREFIX}/api/"
        paths = [unquote(path.removeprefix(api)) for path in transport.paths]
        return code, out.getvalue(), err.getvalue(), paths

    def run(
        self,
        *argv: str,
        prints: bool | str | Sequence[str] = True,
        change: bool = False,
        refused: int | None = None,
        ours: str | None = None,
    ) -> ClientRun:
        """Run ``argv`` as orchestrator-client and as ``orchestrator -c``. ``prints``: True
        (something), False (nothing), or exactly this (lines). ``refused``: the API's error
        status expected (exit 1, the message on stderr). ``ours``: what our CLI prints
        where it deliberately differs."""
        command, _ = parse(argv)
        for attempt in range(3):  # a read may see the fleet change between the two runs
            client = run_client_command(self.stack.http, f"{self.stack.url}/api", argv)
            assert not client.problems, (argv, client.problems)
            assert not client.silent, argv
            text = printed(client.stdout)
            if refused is not None:
                assert client.exit_code == 1, (argv, text)
                assert client.answers[-1][0] == refused, (argv, client.answers[-1])
                assert client.stderr, argv
            elif ours is None:
                assert client.exit_code == 0, (argv, client.stderr)
                if prints is True:
                    assert text, f"{argv}: orchestrator-client printed nothing"
                elif prints is False:
                    assert text == "", (argv, text)
                else:
                    expected = prints if isinstance(prints, str) else "\n".join(prints)
                    assert text == expected, (argv, text)
            replay = list(client.answers[-1:] if CLIENT[command].leader_first else client.answers)
            code, out, err, paths = self.ours(argv, replay if change else None)
            expected_paths = client.paths[1:] if CLIENT[command].leader_first else client.paths
            assert paths == [unquote(p) for p in expected_paths], (argv, paths, client.paths)
            if ours is not None:
                assert (code, out.rstrip("\n")) == (0, ours), (argv, out, err)
                break
            if refused is not None:
                assert code == 1, (argv, out)
                assert client.stderr in err.replace("'", ""), (argv, err, client.stderr)
                break
            if (code, out.rstrip("\n")) == (0, text) or change or attempt == 2:
                assert (code, out.rstrip("\n")) == (0, text), (argv, out, err, text)
                break
        self.covered.add(command)
        return client


def replicas_of(stack: Stack, index: int) -> list[int]:
    """The ports the API lists as ``index``'s replicas."""
    node = stack.sandbox.node(index)
    return sorted(
        i["Key"]["Port"] for i in stack.get(f"instance-replicas/127.0.0.1/{node.port}") or []
    )


def instance(stack: Stack, index: int) -> Any:
    return stack.get(f"instance/127.0.0.1/{stack.sandbox.node(index).port}") or {}


def replicates(stack: Stack, index: int, below: int) -> bool:
    found = instance(stack, index)
    master = found.get("MasterKey", {}).get("Port")
    return (
        master == stack.sandbox.node(below).port
        and found.get("ReplicationSQLThreadState") == 1
        and (found.get("ReplicationIOThreadState") == 1)
    )


def shape(stack: Stack, links: dict[int, int]) -> Callable[[], bool]:
    """The API shows each ``replica: master`` link, replicating."""
    return lambda: all(replicates(stack, replica, master) for replica, master in links.items())


STAR = {1: 0, 2: 0, 3: 0}


def master_is(stack: Stack, member: str, master: str) -> Callable[[], bool]:
    """The API names ``master`` the master of ``member``'s cluster."""

    def check() -> bool:
        found = (stack.get(f"master/{member}") or {}).get("Key", {})
        return f"{found.get('Hostname')}:{found.get('Port')}" == master

    return check


def links(stack: Stack) -> list[tuple[str, Any]]:
    """What each sandbox node replicates from, and what the API says it does."""
    found = []
    for node in stack.sandbox.nodes:
        row = replica_row(stack.sandbox, node.index)
        fields = ("Master_Host", "Master_Port", "Slave_IO_Running", "Slave_SQL_Running")
        server = tuple(row.get(name) for name in fields) if row else None
        api = instance(stack, node.index)
        found.append((node.key, (server, api.get("MasterKey"), api.get("ClusterName"))))
    return found


def test_every_orchestrator_client_command_this_api_serves(stack: Stack) -> None:
    sandbox, table = stack.sandbox, Table(stack)
    key = [sandbox.node(i).key for i in range(4)]
    port = [sandbox.node(i).port for i in range(4)]
    run = table.run

    # --- reads on the star --------------------------------------------------------------------
    run("-c", "clusters", prints=key[0])
    run("-c", "clusters-alias", prints=f"{key[0]},{ALIAS}")
    run("-c", "all-instances", prints=key)
    run("-c", "all-clusters-masters", prints=key[0])
    run("-c", "search", "-i", str(port[1]), prints=key[1])
    run("-c", "instance", "-i", key[1], prints=key[1])
    run("-c", "which-instance", "-i", key[2], prints=key[2])
    run("-c", "which-master", "-i", key[1], prints=key[0])
    run("-c", "which-replicas", "-i", key[0], prints=key[1:])
    run("-c", "which-broken-replicas", "-i", key[0], prints=False)
    run("-c", "which-cluster-instances", "-alias", ALIAS, prints=key)
    run("-c", "which-cluster", "-i", key[2], prints=key[0])
    run("-c", "which-cluster-alias", "-i", key[2], prints=ALIAS)
    run("-c", "which-cluster-master", "-alias", ALIAS, prints=key[0])
    run("-c", "which-cluster-osc-replicas", "-alias", ALIAS, prints=key[1:3])
    run("-c", "which-cluster-osc-running-replicas", "-alias", ALIAS, prints=key[1:3])
    run("-c", "downtimed", prints=False)
    run("-c", "dominant-dc", prints="east")
    assert key[3] in printed(run("-c", "topology", "-alias", ALIAS).stdout)
    run("-c", "topology-tabulated", "-i", key[0])
    run("-c", "topology-tags", "-alias", ALIAS)
    run("-c", "replication-analysis", prints=False)
    run("-c", "which-gtid-errant", "-i", key[1], prints=False)
    run("-c", "is-replicating", "-i", key[1], prints=key[1])
    run("-c", "is-replication-stopped", "-i", key[1], prints=False)
    run("-c", "can-replicate-from", "-i", key[3], "-d", key[2], prints=key[2])
    kv = f"mysql/master/{ALIAS}"
    run(
        "-c",
        "submit-masters-to-kv-stores",
        prints=[
            f"{kv}:{key[0]}",
            f"{kv}/hostname:127.0.0.1",
            f"{kv}/port:{port[0]}",
            f"{kv}/ipv4:127.0.0.1",
            f"{kv}/ipv6:",
        ],
    )
    run("-c", "raft-leader", prints=True)
    run("-c", "raft-health", prints="healthy")
    run("-c", "raft-leader-hostname", prints=socket.gethostname())
    run("-c", "check-global-recoveries", prints="enabled")

    # --- operator metadata ----------------------------------------------------------------------
    run("-c", "snapshot-topologies", change=True)
    run(
        "-c",
        "register-candidate",
        "-i",
        key[2],
        "--promotion-rule",
        "prefer",
        change=True,
        prints=key[2],
    )
    run("-c", "tag", "-i", key[1], "--tag", "role=backup", change=True, prints=key[1])
    run("-c", "tag", "-i", key[2], "--tag", "role=backup", change=True, prints=key[2])
    run("-c", "tags", "-i", key[1], prints="role=backup")
    run("-c", "tag-value", "-i", key[1], "--tag", "role", prints="backup")
    run("-c", "tagged", "--tag", "role=backup", prints=key[1:3])
    run("-c", "untag", "-i", key[1], "--tag", "role", change=True, prints=key[1])
    run("-c", "untag-all", "--tag", "role=backup", change=True, prints=key[2])
    downtime = ("--owner", "ops", "--reason", "compat", "--duration", "10m")
    run("-c", "begin-downtime", "-i", key[3], *downtime, change=True, prints=key[3])
    run("-c", "downtimed", prints=key[3])
    run("-c", "downtimed", "-alias", ALIAS, prints=key[3])
    run("-c", "end-downtime", "-i", key[3], change=True, prints=key[3])
    run(
        "-c",
        "begin-maintenance",
        "-i",
        key[3],
        "--owner",
        "ops",
        "--reason",
        "compat",
        change=True,
        prints=key[3],
    )
    run("-c", "end-maintenance", "-i", key[3], change=True, prints=key[3])
    run("-c", "disable-global-recoveries", change=True, prints="disabled")
    run("-c", "check-global-recoveries", prints="disabled")
    run("-c", "enable-global-recoveries", change=True, prints="enabled")

    # --- discovery ------------------------------------------------------------------------------
    run("-c", "forget", "-i", key[3], change=True, prints=False)
    run("-c", "discover", "-i", key[3], change=True, prints=key[3])
    run("-c", "async-discover", "-i", key[3], change=True, prints=key[3])
    stack.wait(shape(stack, STAR), "the star listed again")

    # --- replication control on a replica ---------------------------------------------------------
    run("-c", "stop-replica", "-i", key[3], change=True, prints=key[3])
    stack.wait(lambda: instance(stack, 3).get("ReplicationSQLThreadState") == 0, "3 stopped")
    run("-c", "is-replication-stopped", "-i", key[3], prints=key[3])
    run("-c", "is-replicating", "-i", key[3], prints=False)
    for command in ("start-replica", "restart-replica", "stop-replica-nice", "start-replica"):
        run("-c", command, "-i", key[3], change=True, prints=key[3])
    for command in (
        "set-writeable",
        "set-read-only",
        "enable-semi-sync-replica",
        "disable-semi-sync-replica",
    ):
        run("-c", command, "-i", key[3], change=True, prints=key[3])
    for command in ("enable-semi-sync-master", "disable-semi-sync-master"):
        run("-c", command, "-i", key[0], change=True, prints=key[0])
    run("-c", "flush-binary-logs", "-i", key[3], change=True, prints=key[3])
    current = str(sandbox.execute(3, "SHOW MASTER STATUS")[0][0])
    run("-c", "purge-binary-logs", "-i", key[3], "--binlog", current, change=True, prints=key[3])
    run("-c", "delay-replication", "-i", key[3], "--seconds", "0", change=True, prints=True)
    stack.wait(shape(stack, STAR), "3 replicating again")

    # --- a broken replica with an errant transaction ----------------------------------------------
    # the same row written on 3 (an errant GTID there), then on the master: 3's SQL thread stops
    sandbox.execute(3, "INSERT INTO sandbox.t (id, note) VALUES (900001, 'compat')")
    sandbox.execute(0, "INSERT INTO sandbox.t (id, note) VALUES (900001, 'compat')")
    stack.wait(
        lambda: instance(stack, 3).get("LastSQLError"),
        "3 broken",
        show=lambda: (instance(stack, 3), sandbox.execute(3, "SHOW SLAVE STATUS")),
    )
    stack.wait(lambda: instance(stack, 3).get("GtidErrant"), "the errant GTID on 3")
    run("-c", "which-broken-replicas", "-i", key[0], prints=key[3])
    run("-c", "which-gtid-errant", "-i", key[3], prints=True)
    run("-c", "replication-analysis", prints=True)
    run("-c", "locate-gtid-errant", "-i", key[3], prints=True)
    run("-c", "skip-query", "-i", key[3], change=True, prints=key[3])
    stack.wait(shape(stack, STAR), "3 past the failed transaction")
    run("-c", "gtid-errant-reset-master", "-i", key[3], change=True, prints=key[3])
    stack.wait(lambda: instance(stack, 3).get("GtidErrant") == "", "no errant GTID on 3")
    sandbox.execute(2, "INSERT INTO sandbox.t (id, note) VALUES (900002, 'compat')")
    stack.wait(lambda: instance(stack, 2).get("GtidErrant"), "the errant GTID on 2")
    run("-c", "gtid-errant-inject-empty", "-i", key[2], change=True, prints=key[2])
    stack.wait(lambda: instance(stack, 2).get("GtidErrant") == "", "no errant GTID on 2")

    # --- moves ------------------------------------------------------------------------------------
    run("-c", "relocate", "-i", key[3], "-d", key[2], change=True, prints=f"{key[3]}<{key[2]}")
    stack.wait(shape(stack, {3: 2}), "3 below 2")
    run("-c", "which-replicas", "-i", key[2], prints=key[3])
    run("-c", "move-up", "-i", key[3], change=True, prints=f"{key[3]}<{key[0]}")
    run("-c", "move-gtid", "-i", key[3], "-d", key[2], change=True, prints=f"{key[3]}<{key[2]}")
    run("-c", "repoint", "-i", key[3], "-d", key[2], change=True, prints=f"{key[3]}<{key[2]}")
    stack.wait(shape(stack, {3: 2}), "3 below 2 again")
    run("-c", "move-up-replicas", "-i", key[2], change=True, prints=key[3])
    stack.wait(shape(stack, STAR), "the star")
    run("-c", "relocate-replicas", "-i", key[0], "-d", key[1], change=True, prints=key[2:])
    stack.wait(shape(stack, {2: 1, 3: 1}), "2 and 3 below 1")
    run("-c", "repoint-replicas", "-i", key[1], change=True, prints=key[2:])
    # orchestrator answers move-replicas-gtid with the destination's key, which the client's
    # `.[] | .Key` cannot read (jq fails, nothing printed); ours prints the destination
    run("-c", "move-replicas-gtid", "-i", key[1], "-d", key[0], change=True, ours=key[0])
    stack.wait(shape(stack, STAR), "the star")
    run("-c", "take-siblings", "-i", key[2], change=True, prints=f"{key[2]}<{key[0]}")
    stack.wait(shape(stack, {1: 2, 3: 2}), "1 and 3 below 2")
    run("-c", "take-master", "-i", key[3], change=True, prints=f"{key[3]}<{key[0]}")
    stack.wait(shape(stack, {3: 0, 2: 3}), "3 above 2")
    run("-c", "relocate", "-i", key[1], "-d", key[0], change=True, prints=f"{key[1]}<{key[0]}")
    run("-c", "relocate", "-i", key[2], "-d", key[0], change=True, prints=f"{key[2]}<{key[0]}")
    stack.wait(shape(stack, STAR), "the star")
    run("-c", "make-co-master", "-i", key[1], change=True, prints=f"{key[1]}<{key[0]}")
    sandbox.execute(0, "STOP SLAVE")
    sandbox.execute(0, "RESET SLAVE ALL")
    stack.wait(lambda: instance(stack, 0).get("IsCoMaster") is False, "0 alone on top again")
    # the API has seen it; the workers read the same snapshots at their own pace, and the
    # takeover below is theirs to refuse ("not the master of a known cluster") until they did
    time.sleep(1.5)

    # --- planned master changes -----------------------------------------------------------------
    run("-c", "graceful-master-takeover", "-alias", ALIAS, "-d", key[1], change=True, prints=key[1])
    stack.wait(
        lambda: (stack.get(f"master/{ALIAS}") or {}).get("Key", {}).get("Port") == port[1],
        "1 master",
    )
    run("-c", "start-replica", "-i", key[0], change=True, prints=key[0])
    stack.wait(shape(stack, {0: 1, 2: 1, 3: 1}), "all below 1")
    run(
        "-c",
        "graceful-master-takeover-auto",
        "-alias",
        ALIAS,
        "-d",
        key[0],
        change=True,
        prints=key[0],
    )
    stack.wait(shape(stack, STAR), "the star under 0 again")
    run(
        "-c",
        "ack-cluster-recoveries",
        "-alias",
        ALIAS,
        "--reason",
        "compat",
        change=True,
        prints=True,
    )
    run("-c", "recover", "-i", key[1], change=True, refused=409)

    # --- last: what breaks the topology -----------------------------------------------------------
    run("-c", "force-master-takeover", "-i", key[0], "-d", key[1], change=True, prints=key[1])
    stack.wait(master_is(stack, key[2], key[1]), "1 master", show=lambda: links(stack))
    run("-c", "ack-all-recoveries", "--reason", "compat", change=True, prints="compat")
    promoted = run("-c", "force-master-failover", "-i", key[1], change=True, prints=True)
    successor = printed(promoted.stdout)
    assert successor in (key[2], key[3]), successor
    run("-c", "ack-all-recoveries", "--reason", "compat", change=True, prints="compat")
    survivor = key[3] if successor == key[2] else key[2]
    stack.wait(master_is(stack, survivor, successor), "a new master", show=lambda: links(stack))
    run("-c", "forget-cluster", "-i", successor, change=True, prints=False)
    run("-c", "discover", "-i", survivor, change=True, prints=survivor)
    # discover answers once discovery probed it; the store has it a moment later
    stack.wait(
        lambda: stack.get(f"instance/{survivor.replace(':', '/')}") is not None,
        f"{survivor} back in the API",
    )
    # Detached replicas come last: discovery keeps reading a replica whose master host is
    # orchestrator's detached form (//host) and the API shows it detached, then attached again.
    for command, detached in (
        ("detach-replica", True),
        ("reattach-replica", False),
        ("detach-replica-master-host", True),
        ("reattach-replica-master-host", False),
    ):
        run("-c", command, "-i", survivor, change=True, prints=survivor)
        stack.wait(
            lambda detached=detached: (
                (found := stack.get(f"instance/{survivor.replace(':', '/')}")) is not None
                and found["IsDetachedMaster"] is detached
                and found["MasterKey"]["Hostname"].startswith("//") is detached
            ),
            f"{survivor} shown {'detached' if detached else 'attached'}",
        )
    run("-c", "reset-replica", "-i", survivor, change=True, prints=survivor)

    assert table.covered == set(CLIENT), sorted(set(CLIENT) - table.covered)
