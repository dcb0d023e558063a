"""Discovery and recovery reach a topology user that requires TLS (issue 12, §2), on a real
MariaDB with TLS on (tests/harness/mariadb.py; certificates made by the test harness).

The user is created ``REQUIRE SSL`` (then ``REQUIRE X509``) with the grants docs/discovery.md
lists; the clients are configured through the settings (``MySQLTopology*``), as the services
build them. A wrong CA fails the probe with the verification error in the instance's error.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator_adapters.probe import ConnectionPool, LivenessLink, ProbeOptions, Prober
from orchestrator_recovery.mysql import Links, MySQLAccess
from orchestrator_shared.config import Settings
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from tests import harness
from tests.harness.certificates import make_certificates
from tests.harness.mariadb import admin_session

pytestmark = pytest.mark.integration

GRANTS = (
    "PROCESS, RELOAD, REPLICATION CLIENT, REPLICATION SLAVE, REPLICATION MASTER ADMIN, "
    "REPLICA MONITOR, SELECT"
)


class TopologyUser:
    def __init__(self, server: harness.MariadbLike) -> None:
        self.server = server
        self.name = f"topo_{secrets.token_hex(4)}"
        self.password = secrets.token_hex(12)

    def sql(self, statement: str) -> None:
        session = admin_session(self.server.host, self.server.port)
        try:
            with session.cursor() as cursor:
                cursor.execute(statement)
        finally:
            session.close()

    def settings(self, **tls: object) -> Settings:
        return Settings(MySQLTopologyUser=self.name, MySQLTopologyPassword=self.password, **tls)


@pytest.fixture
def topology_user(mariadb_admin: harness.MariadbLike) -> Iterator[TopologyUser]:
    user = TopologyUser(mariadb_admin)
    user.sql(f"CREATE USER '{user.name}'@'%' IDENTIFIED BY '{user.password}' REQUIRE SSL")
    try:
        user.sql(f"GRANT {GRANTS} ON *.* TO '{user.name}'@'%'")
        yield user
    finally:
        user.sql(f"DROP USER IF EXISTS '{user.name}'@'%'")


async def probe(settings: Settings, key: InstanceKey) -> InstanceSnapshot:
    options = ProbeOptions.from_settings(settings)
    prober = Prober(options, ConnectionPool(options))
    try:
        return await prober.probe(key)
    finally:
        prober.close()


async def test_discovery_probes_a_tls_only_user_with_the_ca_configured(
    mariadb_admin: harness.MariadbLike, topology_user: TopologyUser, tmp_path: Path
) -> None:
    key = InstanceKey(mariadb_admin.host, mariadb_admin.port)
    ca = str(mariadb_admin.certificates["ca.pem"])

    plain = await probe(topology_user.settings(), key)
    assert not plain.probe.ok and plain.probe.errno == 1045  # REQUIRE SSL: access denied

    tls = topology_user.settings(MySQLTopologyUseMutualTLS=True, MySQLTopologySSLCAFile=ca)
    snapshot = await probe(tls, key)
    assert snapshot.probe.ok, snapshot.probe.error
    assert snapshot.server_id == 1

    link = LivenessLink(key, ProbeOptions.from_settings(tls), timeout=5)
    try:
        await link.check()
    finally:
        link.close()

    async with Links(MySQLAccess.from_settings(tls), statement_timeout=5) as links:
        rows = await links.rows(key, "SHOW SESSION STATUS LIKE 'Ssl_version'")
    assert rows[0]["Value"].startswith("TLSv1.")

    # a server certificate from another CA: refused, with the reason in the instance's error
    other_ca = str(make_certificates(tmp_path / "other")["ca.pem"])
    wrong = await probe(
        topology_user.settings(MySQLTopologyUseMutualTLS=True, MySQLTopologySSLCAFile=other_ca),
        key,
    )
    assert not wrong.probe.ok
    assert wrong.probe.error is not None and "CERTIFICATE_VERIFY_FAILED" in wrong.probe.error
    assert topology_user.password not in wrong.probe.error

    # SkipVerify encrypts without checking the certificate
    skipped = await probe(
        topology_user.settings(
            MySQLTopologyUseMutualTLS=True,
            MySQLTopologySSLCAFile=other_ca,
            MySQLTopologySSLSkipVerify=True,
        ),
        key,
    )
    assert skipped.probe.ok, skipped.probe.error


async def test_a_client_certificate_for_a_require_x509_user(
    mariadb_admin: harness.MariadbLike, topology_user: TopologyUser
) -> None:
    certificates = mariadb_admin.certificates
    topology_user.sql(f"ALTER USER '{topology_user.name}'@'%' REQUIRE X509")
    key = InstanceKey(mariadb_admin.host, mariadb_admin.port)
    tls = {"MySQLTopologyUseMutualTLS": True, "MySQLTopologySSLCAFile": str(certificates["ca.pem"])}

    without_certificate = await probe(topology_user.settings(**tls), key)
    assert not without_certificate.probe.ok and without_certificate.probe.errno == 1045

    with_certificate = await probe(
        topology_user.settings(
            **tls,
            MySQLTopologySSLCertFile=str(certificates["client.pem"]),
            MySQLTopologySSLPrivateKeyFile=str(certificates["client.key"]),
        ),
        key,
    )
    assert with_certificate.probe.ok, with_certificate.probe.error
