"""orchestrator-coordinator as a process: status, metrics and leader events follow the election;
etcd trouble shows; SIGTERM is clean; start-up errors are one line. And TLS to etcd."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import DeliverPolicy

from orchestrator_adapters.election import Election, ElectionOptions
from orchestrator_adapters.etcd import EtcdOptions, EtcdUnavailable
from tests import harness
from tests.harness.certificates import make_certificates
from tests.harness.etcd import EtcdServer
from tests.harness.ports import LOOPBACK, free_ports
from tests.harness.process import http_get, tcp_accepts
from tests.integration.coordinator_support import (
    STEADY,
    CoordinatorProcess,
    DrillWorker,
    enable_etcd_auth,
    read_records,
    wait_for_lead,
)
from tests.integration.stack_support import run_once

pytestmark = pytest.mark.integration


def timing_settings() -> dict[str, Any]:
    return {
        "EtcdLeaseTTLSeconds": STEADY.ttl,
        "EtcdKeepAliveIntervalSeconds": STEADY.keepalive,
        "EtcdRequestTimeoutSeconds": STEADY.request_timeout,
        "MySQLConnectTimeoutSeconds": 1,  # the TTL must stay above it
    }


async def leader_events(url: str) -> list[dict[str, Any]]:
    client = await nats.connect(url, connect_timeout=2)
    try:
        stream = client.jetstream()
        subscription = await stream.subscribe(
            "orchestrator.v1.leader", ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        events = []
        while True:
            try:
                message = await subscription.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                return events
            events.append(json.loads(message.data))
    finally:
        await client.close()


def probe(url: str, path: str) -> tuple[int, Any]:
    """The status and JSON of the coordinator's ``path``."""
    answer = http_get(f"{url}{path}")
    assert answer is not None, path
    return answer[0], json.loads(answer[1])


def test_status_metrics_and_events_follow_the_election(
    etcd_server: harness.EtcdLike, nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    prefix = f"/svc-{uuid.uuid4().hex[:8]}"
    coordinator = CoordinatorProcess(
        {
            "EtcdEndpoints": [etcd_server.endpoint],
            "NATSServers": [nats_server.url],
            "EtcdKeyPrefix": prefix,
            **timing_settings(),
        }
    )
    records = tmp_path / "records.jsonl"
    worker = DrillWorker(
        worker_id="w0",
        endpoints=[etcd_server.endpoint],
        records=records,
        prefix=prefix,
        action_interval=0.2,
    )
    try:
        coordinator.start()
        status = coordinator.wait_status(lambda s: s["checked_at"] is not None, within=5)
        assert status["leader"] is None
        assert status["etcd"]["reachable"] is True
        assert probe(coordinator.url, "/ready") == (200, {"status": "ready"})

        worker.start()
        lead = wait_for_lead(records, after=0, within=10)
        status = coordinator.wait_status(lambda s: s["leader"] is not None, within=5)
        assert status["leader"]["id"] == "w0"
        assert status["leader"]["pid"] == worker.pid
        assert status["fencing_token"] == lead["token"]
        assert status["since"] is not None
        assert [member["id"] for member in status["members"]] == ["w0"]
        metrics = coordinator.metrics()
        assert metrics["orchestrator_coordinator_leader_present"] == 1
        assert metrics["orchestrator_coordinator_fencing_token"] == lead["token"]
        assert metrics["orchestrator_coordinator_members"] == 1
        assert metrics["orchestrator_coordinator_etcd_reachable"] == 1

        worker.kill()
        status = coordinator.wait_status(lambda s: s["leader"] is None, within=STEADY.ttl + 2)
        assert status["members"] == []
        assert coordinator.metrics()["orchestrator_coordinator_leader_changes_total"] == 2

        events = asyncio.run(leader_events(nats_server.url))
        tokens = [event["fencing_token"] for event in events]
        assert tokens == [0, lead["token"], 0]
        assert all(event["schema"] == 1 for event in events)
        assert events[1]["leader"]["id"] == "w0"
        assert events[2]["leader"] is None

        # etcd gone: visible in status, metrics and /ready; no leader claimed; still alive
        etcd_server.kill()
        status = coordinator.wait_status(lambda s: not s["etcd"]["reachable"], within=5)
        assert status["etcd"]["error"]
        assert coordinator.metrics()["orchestrator_coordinator_etcd_reachable"] == 0
        assert probe(coordinator.url, "/ready") == (
            503,
            {"status": "not ready", "reason": "etcd unreachable"},
        )
        assert probe(coordinator.url, "/health") == (
            200,
            {"status": "alive", "etcd_reachable": False, "leader_present": False},
        )
        assert "etcd unreachable" in coordinator.log_tail()

        stopped_at = time.monotonic()
        coordinator.stop()  # SIGTERM
        assert coordinator.returncode == 0
        assert time.monotonic() - stopped_at < 5
    finally:
        worker.close()
        coordinator.close()
    assert read_records(records)


async def test_coordinator_and_workers_with_etcd_authentication(
    etcd_server: harness.EtcdLike, nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    """A user allowed only the leadership prefix is enough for the coordinator and workers."""
    prefix = "/orchestrator"
    enable_etcd_auth(etcd_server.endpoint, prefix=prefix, user="orch", password="orch-pw")
    secret = tmp_path / "etcd-password"
    secret.write_text("orch-pw\n")
    coordinator = CoordinatorProcess(
        {
            "EtcdEndpoints": [etcd_server.endpoint],
            "NATSServers": [nats_server.url],
            "EtcdUser": "orch",
            "EtcdAllowInsecurePassword": True,  # a plain http:// etcd: allowed explicitly
            **timing_settings(),
        },
        environment={"ORCHESTRATOR_EtcdPassword_FILE": str(secret)},
    )
    try:
        await asyncio.to_thread(coordinator.start)
        worker = ElectionOptions(
            etcd=EtcdOptions(
                endpoints=(etcd_server.endpoint,),
                request_timeout=STEADY.request_timeout,
                user="orch",
                password="orch-pw",
            ),
            key_prefix=prefix,
            lease_ttl=STEADY.ttl,
            keepalive_interval=STEADY.keepalive,
        )
        async with Election(worker) as election:
            term = await election.wait_leader()
            status = await asyncio.to_thread(
                coordinator.wait_status, lambda s: s["leader"] is not None, within=5
            )
            assert status["fencing_token"] == term.token
            assert status["etcd"]["reachable"] is True
    finally:
        await asyncio.to_thread(coordinator.close)


def run_coordinator(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_once("orchestrator_coordinator.main", config, tmp_path, timeout=30)


def test_unreachable_etcd_stops_start_up_with_one_line(tmp_path: Path) -> None:
    endpoints = [f"http://{LOOPBACK}:{port}" for port in free_ports(2)]
    started = time.monotonic()
    result = run_coordinator(
        {"EtcdEndpoints": endpoints, "CoordinatorListenAddress": f"{LOOPBACK}:0"}, tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        "orchestrator-coordinator: EtcdEndpoints: no etcd answered within 5 s"
    )
    assert endpoints[0] in lines[0]
    assert time.monotonic() - started < 15


def test_keepalive_not_below_the_ttl_stops_start_up(tmp_path: Path) -> None:
    result = run_coordinator(
        {"EtcdLeaseTTLSeconds": 3, "EtcdKeepAliveIntervalSeconds": 3}, tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator-coordinator: bad configuration: EtcdKeepAliveIntervalSeconds: must be at "
        "most a third of EtcdLeaseTTLSeconds (3 s), got 3"
    ]


# --- TLS ------------------------------------------------------------------------------------


class TlsEtcdServer(EtcdServer):
    """A single etcd serving clients over TLS and requiring client certificates (unless
    ``client_cert_auth=False``)."""

    def __init__(self, certificates: dict[str, Path], *, client_cert_auth: bool = True) -> None:
        super().__init__()
        self.certificates = certificates
        self.client_cert_auth = client_cert_auth

    @property
    def endpoint(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        return [
            *super().command(),
            "--cert-file", str(self.certificates["server.pem"]),
            "--key-file", str(self.certificates["server.key"]),
            *(
                ["--trusted-ca-file", str(self.certificates["ca.pem"]), "--client-cert-auth"]
                if self.client_cert_auth
                else []
            ),
        ]  # fmt: skip

    def probe(self) -> bool:
        return tcp_accepts(LOOPBACK, self.port)


async def _elected_and_guarded(options: EtcdOptions, prefix: str) -> None:
    """An election on ``options`` becomes leader and its guard confirms the term."""
    election_options = ElectionOptions(
        etcd=options, key_prefix=prefix, lease_ttl=STEADY.ttl, keepalive_interval=0.4
    )
    async with Election(election_options) as election:
        async with asyncio.timeout(5):
            term = await election.wait_leader()
        assert (await election.guard()).token == term.token


async def test_election_over_tls_with_client_certificates(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    server = TlsEtcdServer(certificates)
    try:
        await asyncio.to_thread(server.start)
        tls = EtcdOptions(
            endpoints=(server.endpoint,),
            request_timeout=STEADY.request_timeout,
            ca_cert_file=str(certificates["ca.pem"]),
            cert_file=str(certificates["client.pem"]),
            key_file=str(certificates["client.key"]),
        )
        await _elected_and_guarded(tls, "/tls")

        # without a client certificate the server refuses the connection
        no_client_cert = EtcdOptions(
            endpoints=(server.endpoint,),
            request_timeout=STEADY.request_timeout,
            ca_cert_file=str(certificates["ca.pem"]),
        )
        with pytest.raises(EtcdUnavailable):
            async with Election(
                ElectionOptions(
                    etcd=no_client_cert, key_prefix="/tls", lease_ttl=2, startup_timeout=1
                )
            ):
                pass
    finally:
        server.close()


async def test_an_etcd_password_goes_over_tls_only(tmp_path: Path) -> None:
    """etcd with auth on: the password works over https://; over http:// the coordinator
    refuses to start (one line, exit 2) unless EtcdAllowInsecurePassword says so."""
    certificates = make_certificates(tmp_path)
    server = TlsEtcdServer(certificates, client_cert_auth=False)
    try:
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(
            enable_etcd_auth,
            server.endpoint,
            prefix="/tls-auth",
            user="orch",
            password="orch-tls-pw",
            ca_file=certificates["ca.pem"],
        )
        options = EtcdOptions(
            endpoints=(server.endpoint,),
            request_timeout=STEADY.request_timeout,
            ca_cert_file=str(certificates["ca.pem"]),
            user="orch",
            password="orch-tls-pw",
        )
        await _elected_and_guarded(options, "/tls-auth")
    finally:
        await asyncio.to_thread(server.close)
    plain = f"http://{LOOPBACK}:{server.port}"
    result = run_coordinator(
        {
            "EtcdEndpoints": [plain],
            "EtcdUser": "orch",
            "EtcdPassword": "orch-tls-pw",
            "CoordinatorListenAddress": f"{LOOPBACK}:0",
        },
        tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator-coordinator: bad configuration: EtcdPassword: would be sent in clear "
        f"text to {plain}; use https:// endpoints (EtcdCACertFile) or set "
        "EtcdAllowInsecurePassword"
    ]
    assert "orch-tls-pw" not in result.stderr + result.stdout
