"""``orchestrator-healthcheck``, the containers' health check, run as the installed console
script against real listeners on loopback: a service's observability listener over HTTP
(healthy, not ready), an HTTPS server with a certificate from a test CA (trusted through
``--cafile`` or ``ORCHESTRATOR_CA_FILE``, refused without it), a closed port, and bad command
lines. Exit 0 on 2xx, 1 with one line on stderr otherwise, 2 without a URL."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from orchestrator_adapters.observability import Heartbeat, ObservabilityServer
from tests.harness.certificates import TestAuthority
from tests.harness.ports import LOOPBACK, free_port

pytestmark = pytest.mark.integration

_OURS = ("ORCHESTRATOR_CA_FILE", "CURL_CA_BUNDLE", "ORCHESTRATOR_HEALTHCHECK_URL")


def healthcheck(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("orchestrator-healthcheck")
    assert program is not None, "orchestrator-healthcheck is not installed"
    inherited = {k: v for k, v in os.environ.items() if k not in _OURS}
    return subprocess.run(
        [program, *args],
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def one_line(stream: str) -> str:
    lines = stream.splitlines()
    assert len(lines) == 1, stream
    return lines[0]


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    """A service's observability listener: its port, and the reason it is not ready (a list
    the test changes)."""
    why = ["not connected to NATS"]
    port = free_port()
    with ObservabilityServer(
        LOOPBACK, port, registry=CollectorRegistry(), ready=lambda: why[0], heartbeat=Heartbeat()
    ):
        yield port, why


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "ok"}\n'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on loopback with a certificate from a test CA: its URL and the CA."""
    authority = TestAuthority(tmp_path / "pki")
    certificate, key = authority.issue("server")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    server = ThreadingHTTPServer((LOOPBACK, free_port()), _Healthy)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://{LOOPBACK}:{server.server_address[1]}/api/health", authority.certificate
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_healthy_answer_is_exit_0_and_an_unhealthy_one_exit_1_with_the_reason(
    listener: tuple[int, list[str]],
) -> None:
    port, why = listener
    healthy = healthcheck(f"http://{LOOPBACK}:{port}/health")
    assert healthy.returncode == 0, healthy.stderr
    assert one_line(healthy.stdout) == f"http://{LOOPBACK}:{port}/health answered 200"

    not_ready = healthcheck(f"http://{LOOPBACK}:{port}/ready")
    assert not_ready.returncode == 1
    assert one_line(not_ready.stderr) == (
        f"orchestrator-healthcheck: http://{LOOPBACK}:{port}/ready answered 503: "
        '{"status": "not ready", "reason": "not connected to NATS"}'
    )
    why[0] = ""
    assert healthcheck(f"http://{LOOPBACK}:{port}/ready").returncode == 0

    # the image's HEALTHCHECK names no URL: it comes from the environment
    from_environment = healthcheck(ORCHESTRATOR_HEALTHCHECK_URL=f"http://{LOOPBACK}:{port}/health")
    assert from_environment.returncode == 0, from_environment.stderr


def test_nothing_listening_is_exit_1() -> None:
    url = f"http://{LOOPBACK}:{free_port()}/health"
    closed = healthcheck(url, "--timeout", "2")
    assert closed.returncode == 1
    line = one_line(closed.stderr)
    assert line.startswith(f"orchestrator-healthcheck: {url}: no answer: "), line
    assert "Connection refused" in line


def test_https_is_verified_against_the_given_ca(https_server: tuple[str, Path]) -> None:
    url, ca = https_server
    trusted = healthcheck("--cafile", str(ca), url)
    assert trusted.returncode == 0, trusted.stderr
    assert healthcheck(url, ORCHESTRATOR_CA_FILE=str(ca)).returncode == 0

    untrusted = healthcheck(url)  # the system's CAs do not know the test CA
    assert untrusted.returncode == 1
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in one_line(untrusted.stderr)

    missing = healthcheck("--cafile", "/nonexistent/ca.pem", url)
    assert missing.returncode == 1
    assert one_line(missing.stderr) == (
        "orchestrator-healthcheck: ORCHESTRATOR_CA_FILE: cannot read /nonexistent/ca.pem: "
        "No such file or directory"
    )


def test_a_bad_command_line_says_so() -> None:
    no_url = healthcheck()
    assert no_url.returncode == 2
    assert one_line(no_url.stderr) == (
        "orchestrator-healthcheck: no URL: give one or set ORCHESTRATOR_HEALTHCHECK_URL"
    )
    not_http = healthcheck("ftp://127.0.0.1/health")
    assert not_http.returncode == 1
    assert one_line(not_http.stderr) == (
        "orchestrator-healthcheck: 'ftp://127.0.0.1/health' is not an http:// or https:// URL"
    )
