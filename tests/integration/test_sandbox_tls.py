"""The MariaDB sandbox with TLS on (issue 12, §2): real ``mariadbd`` nodes serving TLS with
certificates the test makes (tests/harness/certificates.py), replicating over verified TLS;
discovery crawling them as a topology user that requires TLS, a wrong CA refused with the
verification error, and a graceful takeover through the whole stack over TLS.

Users are made to require TLS (``REQUIRE SSL`` / ``REQUIRE X509``) on the master before
anything connects as them, so a connection in clear would be refused: a passing test shows
that every connection of discovery, the API and the recovery workers was TLS.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pymysql
import pytest

from orchestrator_cli.sandbox import (
    REPLICATION_USER,
    TOPOLOGY_PASSWORD,
    TOPOLOGY_USER,
    Sandbox,
    SandboxTLS,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import SandboxError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from tests.conftest import SandboxFactory
from tests.harness.certificates import make_certificates
from tests.integration.stack_support import StackFactory
from tests.integration.test_discovery_tls import probe
from tests.integration.test_recovery_stack import api_get, replica_status
from tests.integration.test_sandbox import free_base_port, is_gone, orchestrator
from tests.integration.test_takeover import (
    CREDENTIALS,
    cli,
    master_shown,
    ready,
    same_data,
    star_of,
    take_over_to_node_1,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by file name."""
    return make_certificates(tmp_path_factory.mktemp("sandbox-tls"))


@pytest.fixture
def files(certificates: dict[str, Path]) -> SandboxTLS:
    return SandboxTLS(
        ca=certificates["ca.pem"], cert=certificates["server.pem"], key=certificates["server.key"]
    )


@pytest.fixture
def tls_sandbox(sandbox_factory: SandboxFactory, files: SandboxTLS) -> Sandbox:
    return sandbox_factory(nodes=3, tls=files)


def variable(sandbox: Sandbox, index: int, name: str) -> str:
    return str(sandbox.execute(index, f"SELECT @@global.{name}")[0][0])


def tls_version(sandbox: Sandbox, index: int, ca: Path) -> str:
    """The TLS version of a root session over TCP that verified the node's certificate."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        pymysql.connect(**sandbox.connect_args(index), ssl=context) as connection,  # type: ignore[arg-type]
        connection.cursor() as cursor,
    ):
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
        row = cursor.fetchone()
    assert row is not None
    return str(row[1])


def reconnect_replicas(sandbox: Sandbox) -> None:
    """Every replica drops its connection to its source and opens a new one."""
    for node in sandbox.nodes[1:]:
        sandbox.execute(node.index, "STOP SLAVE IO_THREAD")
        sandbox.execute(node.index, "START SLAVE IO_THREAD")


def test_nodes_serve_tls_and_replicate_over_verified_tls_also_after_a_restart(
    tls_sandbox: Sandbox, files: SandboxTLS
) -> None:
    sandbox = tls_sandbox
    assert sandbox.tls == files
    for node in sandbox.nodes:
        assert variable(sandbox, node.index, "have_ssl") == "YES"
        assert variable(sandbox, node.index, "ssl_ca") == str(files.ca)
        assert tls_version(sandbox, node.index, files.ca).startswith("TLSv1.")
    for node in sandbox.nodes[1:]:
        status = replica_status(sandbox, node.index)
        assert status is not None
        assert status["Master_SSL_Allowed"] == "Yes"
        assert status["Master_SSL_Verify_Server_Cert"] == "Yes"
        assert status["Master_SSL_CA_File"] == str(files.ca)

    # the replication user refuses clear connections from now on: replicas that reconnect and
    # still catch up replicate over TLS
    sandbox.execute(0, f"ALTER USER '{REPLICATION_USER}'@'%' REQUIRE SSL")
    sandbox.wait_caught_up()
    reconnect_replicas(sandbox)
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('over tls')")
    sandbox.wait_caught_up()

    # a restarted node, and the sandbox as another process loads it, keep TLS
    sandbox.stop(1)
    sandbox.start(1)
    assert variable(sandbox, 1, "have_ssl") == "YES"
    sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('after a restart')")
    sandbox.wait_caught_up()
    assert Sandbox.load(sandbox.directory).tls == files


def topology_settings(**tls: object) -> Settings:
    """The sandbox's topology user with the ``MySQLTopology*`` TLS settings ``tls``."""
    return Settings(MySQLTopologyUser=TOPOLOGY_USER, MySQLTopologyPassword=TOPOLOGY_PASSWORD, **tls)


async def crawl(settings: Settings, seed: InstanceKey) -> dict[str, InstanceSnapshot]:
    """Every instance reachable from ``seed`` through its replicas, probed as discovery does."""
    found: dict[str, InstanceSnapshot] = {}
    pending = [seed]
    while pending:
        key = pending.pop()
        snapshot = await probe(settings, key)
        found[str(key)] = snapshot
        if snapshot.probe.ok:
            pending += [
                InstanceKey.parse(replica)
                for replica in snapshot.replica_keys
                if replica not in found
            ]
    return found


async def test_discovery_crawls_the_sandbox_over_verified_tls_and_refuses_a_wrong_ca(
    tls_sandbox: Sandbox, certificates: dict[str, Path], tmp_path: Path
) -> None:
    sandbox = tls_sandbox
    sandbox.execute(0, f"ALTER USER '{TOPOLOGY_USER}'@'%' REQUIRE SSL")
    sandbox.wait_caught_up()
    seed = InstanceKey.parse(sandbox.master.key)
    ca = {"MySQLTopologyUseMutualTLS": True, "MySQLTopologySSLCAFile": str(certificates["ca.pem"])}

    plain = await probe(topology_settings(), seed)
    assert not plain.probe.ok and plain.probe.errno == 1045  # REQUIRE SSL: access denied

    topology = await crawl(topology_settings(**ca), seed)
    assert sorted(topology) == sorted(node.key for node in sandbox.nodes)
    for node in sandbox.nodes:
        snapshot = topology[node.key]
        assert snapshot.probe.ok, snapshot.probe.error
        assert snapshot.server_id == node.server_id
        if node.index > 0:
            channel = snapshot.primary_channel
            assert channel is not None and channel.master_key == sandbox.master.key
            assert channel.master_ssl_allowed  # the replica's own link is TLS too

    other_ca = str(make_certificates(tmp_path / "other")["ca.pem"])
    wrong_settings = topology_settings(
        MySQLTopologyUseMutualTLS=True, MySQLTopologySSLCAFile=other_ca
    )
    for node in sandbox.nodes:
        wrong = await probe(wrong_settings, InstanceKey.parse(node.key))
        assert not wrong.probe.ok
        assert wrong.probe.error is not None
        assert "CERTIFICATE_VERIFY_FAILED" in wrong.probe.error, wrong.probe.error
        assert TOPOLOGY_PASSWORD not in wrong.probe.error

    # REQUIRE X509: TLS alone is not enough, a certificate from the CA is
    sandbox.execute(0, f"ALTER USER '{TOPOLOGY_USER}'@'%' REQUIRE X509")
    sandbox.wait_caught_up()
    without_certificate = await probe(topology_settings(**ca), seed)
    assert not without_certificate.probe.ok and without_certificate.probe.errno == 1045
    client = {
        "MySQLTopologySSLCertFile": str(certificates["client.pem"]),
        "MySQLTopologySSLPrivateKeyFile": str(certificates["client.key"]),
    }
    topology = await crawl(topology_settings(**ca, **client), seed)
    assert sorted(topology) == sorted(node.key for node in sandbox.nodes)
    assert all(snapshot.probe.ok for snapshot in topology.values())


def require_x509(sandbox: Sandbox) -> None:
    """The topology user needs a client certificate, on every node, before the stack starts."""
    sandbox.execute(0, f"ALTER USER '{TOPOLOGY_USER}'@'%' REQUIRE X509")
    sandbox.wait_caught_up()


def test_the_whole_stack_discovers_and_takes_over_over_tls(
    make_stack: StackFactory,
    files: SandboxTLS,
    certificates: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    stack = ready(
        make_stack,
        sandbox_tls=files,
        prepare=require_x509,
        ReplicationCredentialsQuery=CREDENTIALS,
        MySQLTopologyUseMutualTLS=True,
        MySQLTopologySSLCAFile=str(certificates["ca.pem"]),
        MySQLTopologySSLCertFile=str(certificates["client.pem"]),
        MySQLTopologySSLPrivateKeyFile=str(certificates["client.key"]),
    )
    sandbox = stack.sandbox
    master_shown(stack, 0)  # discovery crawled the 4 nodes over TLS
    instance = api_get(stack, f"/api/instance/127.0.0.1/{sandbox.node(2).port}")
    assert instance["IsLastCheckValid"], instance
    take_over_to_node_1(stack, capsys)  # the recovery workers connect as the X509 user
    for index in (0, 2, 3):  # moved: kept by the move; the demoted master 0: copied to it
        moved = replica_status(sandbox, index)
        assert moved is not None and moved["Master_SSL_Allowed"] == "Yes"
        assert moved["Master_SSL_Verify_Server_Cert"] == "Yes"
    master_shown(stack, 1)
    assert cli(stack, capsys, "-c", "start-replica", "-i", sandbox.node(0).key)[0] == 0
    star_of(sandbox, 1)
    same_data(sandbox, 1, "after a takeover over tls")


def test_cli_up_with_tls_and_a_restart_from_the_manifest(
    certificates: dict[str, Path], tmp_path: Path
) -> None:
    own = tmp_path / "tls"  # copies: this test removes one
    own.mkdir()
    for name in ("ca.pem", "server.pem", "server.key"):
        (own / name).write_bytes(certificates[name].read_bytes())
    files = SandboxTLS(ca=own / "ca.pem", cert=own / "server.pem", key=own / "server.key")
    directory = tmp_path / "cli"
    base = free_base_port(2)
    loaded: Sandbox | None = None  # the one that restarts the nodes must reap them
    flags = ["--ssl-ca", str(files.ca), "--ssl-cert", str(files.cert), "--ssl-key", str(files.key)]
    try:
        up = orchestrator(
            "sandbox", "up", "--dir", str(directory), "--nodes", "2", "--base-port", str(base),
            *flags,
        )  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert f"with TLS (CA {files.ca})" in up.stdout
        assert f"+ 127.0.0.1:{base + 1} [replica, ro, IO:Yes SQL:Yes" in up.stdout

        down = orchestrator("sandbox", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        # started again from what sandbox.json recorded: TLS as before
        loaded = Sandbox.load(directory)
        assert loaded.tls == files
        files.key.rename(own / "elsewhere.key")
        with pytest.raises(SandboxError, match=f"^ssl-key {files.key}: no such file$"):
            loaded.start(0)  # the files are checked again
        assert not loaded.is_running(0)
        (own / "elsewhere.key").rename(files.key)
        loaded.start(0)
        loaded.start(1)
        assert variable(loaded, 0, "have_ssl") == "YES"
        assert tls_version(loaded, 1, files.ca).startswith("TLSv1.")
        loaded.wait_caught_up()
        pids = [node.pid for node in loaded.nodes]
    finally:
        if loaded is not None:
            loaded.down()
        elif (directory / "sandbox.json").exists():
            Sandbox.load(directory).down()
    assert all(is_gone(pid) for pid in pids if pid is not None)


def test_cli_refuses_a_key_that_does_not_match_the_certificate(
    files: SandboxTLS, certificates: dict[str, Path], tmp_path: Path
) -> None:
    result = orchestrator(
        "sandbox", "up", "--dir", str(tmp_path / "sbx"), "--base-port", str(free_base_port(4)),
        "--ssl-ca", str(files.ca), "--ssl-cert", str(files.cert),
        "--ssl-key", str(certificates["client.key"]),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "not a usable certificate and key pair" in result.stderr
    assert not (tmp_path / "sbx").exists()


def test_a_sandbox_without_tls_serves_none(sandbox_factory: SandboxFactory) -> None:
    sandbox = sandbox_factory(nodes=1)
    assert sandbox.tls is None
    assert variable(sandbox, 0, "have_ssl") == "DISABLED"
