"""The topology-api process over HTTPS (``UseSSL``) and with client certificates
(``UseMutualTLS``), with a CA and certificates made by the test; the CLI talking to it; and the
start-up checks of the HTTPS files. Plus ``MasterFailoverLostInstancesDowntimeMinutes`` reaching
the API process's bus consumer."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from orchestrator_api import main as api_main
from orchestrator_discovery.nats_bus import NatsBus
from orchestrator_shared.bus import Subjects
from orchestrator_shared.events import RecoveryData, RecoveryEvent, RecoveryPhase
from tests import harness
from tests.harness.certificates import TestAuthority, encrypted_copy
from tests.harness.ports import free_port
from tests.integration.test_stack import start, stop, wait_until
from tests.integration.test_store import FLEET, NOW

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"
SUBJECTS = Subjects()
# what the client side reads from the environment (cleared so the machine's own do not count)
CLIENT_VARIABLES = ("ORCHESTRATOR_", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
CLUSTERS = "db1:3306\ndb9:3306\n"  # what `orchestrator -c clusters` prints for FLEET


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: tuple[Path, Path]
    dba: tuple[Path, Path]  # a client certificate with OU=dba
    web: tuple[Path, Path]  # a client certificate with OU=web
    rogue: tuple[Path, Path]  # OU=dba, but signed by a CA the API does not trust


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    authority = TestAuthority(tmp_path / "pki")
    rogue = TestAuthority(tmp_path / "rogue", name="rogue-ca")
    return Pki(
        ca=authority.certificate,
        server=authority.issue("server"),
        dba=authority.issue("dba", usage="clientAuth", subject="/O=acme/OU=dba/CN=alice"),
        web=authority.issue("web", usage="clientAuth", subject="/O=acme/OU=web/CN=bob"),
        rogue=rogue.issue("mallory", usage="clientAuth", subject="/OU=dba/CN=mallory"),
    )


def trusting(ca: Path, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(*map(str, client))
    return context


@contextmanager
def api_process(config: dict[str, Any], directory: Path, nats_url: str) -> Iterator[int]:
    """``orchestrator-topology-api`` with ``config``; yields its port once it listens."""
    port = free_port()
    document = {
        "NATSServers": [nats_url],
        "ListenAddress": f"127.0.0.1:{port}",
        "SQLite3DataFile": str(directory / "orchestrator.sqlite3"),
        **config,
    }
    process = start("orchestrator_api.main", document, directory)
    try:
        yield port
    finally:
        code, output = stop(process)
        assert code == 0, output
        assert "Traceback" not in output, output


def wait_for_https(url: str, verify: ssl.SSLContext) -> None:
    wait_until(
        lambda: httpx.get(f"{url}/api/status", verify=verify).status_code == 200,
        timeout=30,
        what=f"{url}/api/status",
    )


def publish(nats_url: str, events: Sequence[tuple[RecoveryPhase, RecoveryData]] = ()) -> None:
    """The test fleet's snapshots, then ``events``, on the bus as discovery / recovery do."""

    async def go() -> None:
        bus = NatsBus(SUBJECTS, events_retention_days=1)
        await bus.connect([nats_url], name="test-publisher")
        raw = await nats.connect(nats_url)
        try:
            for snap in FLEET:
                await bus.publish_snapshot(snap)
            for phase, data in events:
                event = RecoveryEvent.of(phase, data, source="test")
                subject = f"{SUBJECTS.root}.recovery.{data.cluster}.{phase}"
                await raw.jetstream().publish(subject, event.to_json())
        finally:
            await raw.close()
            await bus.close()

    asyncio.run(go())


def cli(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator -c clusters --api url`` with only ``env`` of the client's variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_VARIABLES)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli.main", "-c", "clusters", "--api", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**clean, **env},
    )


def test_the_api_serves_https_to_clients_that_trust_its_ca(
    pki: Pki, tmp_path: Path, nats_server: harness.NatsLike
) -> None:
    key = encrypted_copy(pki.server[1], PASSPHRASE)
    config = {
        "UseSSL": True,
        "SSLCertFile": str(pki.server[0]),
        "SSLPrivateKeyFile": str(key),
        "SSLPrivateKeyPassword": PASSPHRASE,
    }
    with api_process(config, tmp_path, nats_server.url) as port:
        url = f"https://127.0.0.1:{port}"
        wait_for_https(url, trusting(pki.ca))
        publish(nats_server.url)
        wait_until(
            lambda: len(httpx.get(f"{url}/api/clusters", verify=trusting(pki.ca)).json()) == 2,
            timeout=20,
            what="the fleet stored",
        )
        health = httpx.get(f"{url}/api/health", verify=trusting(pki.ca))
        assert health.json()["Code"] == "OK"
        by_name = httpx.get(f"https://localhost:{port}/api/lb-check", verify=trusting(pki.ca))
        assert by_name.is_success  # the certificate names localhost too
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/api/health")  # certifi's CAs do not include the test's
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/api/health")  # no plain HTTP on that port

        # the CLI: ORCHESTRATOR_CA_FILE, curl's CURL_CA_BUNDLE, or the certificate itself
        for env in (
            {"ORCHESTRATOR_CA_FILE": str(pki.ca)},
            {"CURL_CA_BUNDLE": str(pki.ca)},
            {"ORCHESTRATOR_CA_FILE": str(pki.server[0])},
        ):
            result = cli(url, **env)
            assert (result.returncode, result.stdout, result.stderr) == (0, CLUSTERS, ""), env
        refused = cli(url)
        assert refused.returncode == 1
        [line] = refused.stderr.splitlines()
        assert line.startswith(f"orchestrator: cannot reach the API at {url}/api: ")
        assert "certificate verify failed" in line
        assert line.endswith(
            "(to trust the API's certificate, set ORCHESTRATOR_CA_FILE to its CA's PEM file)"
        )


def test_mutual_tls_wants_a_certificate_from_the_ca_with_a_valid_ou(
    pki: Pki, tmp_path: Path, nats_server: harness.NatsLike
) -> None:
    config = {
        "UseSSL": True,
        "SSLCertFile": str(pki.server[0]),
        "SSLPrivateKeyFile": str(pki.server[1]),
        "UseMutualTLS": True,
        "SSLCAFile": str(pki.ca),
        "SSLValidOUs": ["dba", "ops"],
    }
    with api_process(config, tmp_path, nats_server.url) as port:
        url = f"https://127.0.0.1:{port}"
        wait_for_https(url, trusting(pki.ca))  # the status endpoint needs no certificate
        publish(nats_server.url)
        dba = trusting(pki.ca, pki.dba)
        wait_until(
            lambda: len(httpx.get(f"{url}/api/clusters", verify=dba).json()) == 2,
            timeout=20,
            what="the fleet stored",
        )
        assert httpx.get(f"{url}/api/instance/db1/3306", verify=dba).json()["Key"] == {
            "Hostname": "db1",
            "Port": 3306,
        }
        # no certificate: 401 on every route but the status endpoint and the Kubernetes probes,
        # the hot reads included
        for path in ("/api/clusters", "/api/instance/db1/3306", "/api/health", "/api/_ping"):
            answer = httpx.get(f"{url}{path}", verify=trusting(pki.ca))
            assert answer.status_code == 401, path
            assert answer.json() == {
                "Code": "ERROR",
                "Message": "a client certificate signed by the API's CA is required (mutual TLS)",
                "Details": None,
            }
        # the probes answer without one: a kubelet presents no certificate
        for path, state in (("/health", "alive"), ("/ready", "ready")):
            assert httpx.get(f"{url}{path}", verify=trusting(pki.ca)).json() == {"status": state}
        # a certificate from the CA, but not of a valid OU
        answer = httpx.get(f"{url}/api/clusters", verify=trusting(pki.ca, pki.web))
        assert answer.status_code == 401
        assert "organizational units (web)" in answer.json()["Message"]
        # a certificate the CA did not sign: the handshake fails
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/api/status", verify=trusting(pki.ca, pki.rogue))

        dba_env = {
            "ORCHESTRATOR_CA_FILE": str(pki.ca),
            "ORCHESTRATOR_CLIENT_CERT_FILE": str(pki.dba[0]),
            "ORCHESTRATOR_CLIENT_KEY_FILE": str(pki.dba[1]),
        }
        result = cli(url, **dba_env)
        assert (result.returncode, result.stdout, result.stderr) == (0, CLUSTERS, "")
        refused = cli(url, ORCHESTRATOR_CA_FILE=str(pki.ca))
        assert (refused.returncode, refused.stdout) == (1, "")
        assert refused.stderr == (
            "orchestrator: a client certificate signed by the API's CA is required (mutual TLS)\n"
        )


def test_https_files_that_cannot_serve_stop_start_up_with_one_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = map(str, pki.server)
    encrypted = str(encrypted_copy(pki.server[1], PASSPHRASE))
    missing = str(tmp_path / "missing.pem")
    https = {"UseSSL": True, "SSLCertFile": cert, "SSLPrivateKeyFile": key}
    mutual = {**https, "UseMutualTLS": True}
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {**https, "SSLCertFile": missing},
            f"SSLCertFile: cannot read {missing}: No such file or directory",
        ),
        (
            {**https, "SSLPrivateKeyFile": str(tmp_path)},
            f"SSLPrivateKeyFile: cannot read {tmp_path}: Is a directory",
        ),
        ({**https, "SSLCertFile": key}, f"SSLCertFile: {key} holds no PEM certificate"),
        (
            {**https, "SSLPrivateKeyFile": cert},
            f"SSLPrivateKeyFile: {cert} holds no PEM private key",
        ),
        (
            {**https, "SSLPrivateKeyFile": str(pki.dba[1])},
            f"SSLPrivateKeyFile: the key in {pki.dba[1]} does not match the certificate in "
            f"{cert} (SSLCertFile)",
        ),
        (
            {**https, "SSLPrivateKeyFile": encrypted},
            f"SSLPrivateKeyFile: {encrypted} is encrypted: set its passphrase in "
            "SSLPrivateKeyPassword",
        ),
        (
            {**https, "SSLPrivateKeyFile": encrypted, "SSLPrivateKeyPassword": "guess"},
            f"SSLPrivateKeyPassword: does not decrypt {encrypted}",
        ),
        ({**mutual, "SSLCAFile": key}, f"SSLCAFile: {key} holds no PEM certificate"),
        (
            {**mutual, "SSLCAFile": missing},
            f"SSLCAFile: cannot read {missing}: No such file or directory",
        ),
    ]
    config = tmp_path / "orchestrator.conf.json"
    for document, message in cases:
        config.write_text(json.dumps(document))
        assert api_main.cli(["--config", str(config)]) == 2, document
        err = capsys.readouterr().err
        assert err == f"orchestrator-topology-api: bad configuration: {message}\n"
        assert "guess" not in err


def test_lost_replicas_are_downtimed_for_orchestrators_minutes(
    tmp_path: Path, nats_server: harness.NatsLike
) -> None:
    data = RecoveryData(
        recovery_id="r-1",
        cluster="db1:3306",
        analysis="DeadMaster",
        failed="db1:3306",
        fencing_token=7,
        worker="worker-a",
        started_at=NOW,
    )
    completed = data.model_copy(
        update={"successor": "db2:3306", "lost": {"db3:3306": "no GTID"}, "ended_at": NOW}
    )
    config = {"MasterFailoverLostInstancesDowntimeMinutes": 7}
    with api_process(config, tmp_path, nats_server.url) as port:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/api/status").is_success, timeout=30, what="the API")
        before = datetime.now(UTC).replace(microsecond=0)
        publish(
            nats_server.url,
            [(RecoveryPhase.DETECTED, data), (RecoveryPhase.COMPLETED, completed)],
        )
        lost = wait_until(
            lambda: (
                (body := httpx.get(f"{url}/api/instance/db3/3306").json())["IsDowntimed"] and body
            ),
            timeout=20,
            what="db3 downtimed",
        )
        after = datetime.now(UTC)
        assert lost["DowntimeReason"] == "lost-in-recovery"
        ends = datetime.strptime(lost["DowntimeEndTimestamp"], "%Y-%m-%d %H:%M:%S")
        ends = ends.replace(tzinfo=UTC)
        assert before + timedelta(minutes=7) <= ends <= after + timedelta(minutes=7)
