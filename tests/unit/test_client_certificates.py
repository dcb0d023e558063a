"""Mutual TLS decisions (pure): which requests need a client certificate, which OUs pass, the
gate in front of the application, and the listen policy with client certificates."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from orchestrator_api.auth import Denied, check_client_certificate, check_listen_policy
from orchestrator_api.http.client_certificates import (
    ClientCertificateGate,
    PeerCertificates,
    organizational_units,
    serving,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError

pytestmark = pytest.mark.unit

TLS = {"UseSSL": True, "SSLCertFile": "server.pem", "SSLPrivateKeyFile": "server.key"}
MUTUAL = Settings.model_validate({**TLS, "UseMutualTLS": True, "SSLCAFile": "ca.pem"})
WITH_OUS = MUTUAL.model_copy(update={"SSLValidOUs": ("dba", "ops")})
LB_CHECK = WITH_OUS.model_copy(update={"StatusEndpoint": "/api/lb-check"})


def test_without_mutual_tls_nothing_is_asked() -> None:
    assert check_client_certificate(Settings.model_validate(TLS), "/api/clusters", None) is None


@pytest.mark.parametrize(
    ("settings", "path", "units", "allowed"),
    [
        (MUTUAL, "/api/clusters", None, False),
        (MUTUAL, "/api/clusters", (), True),  # any certificate from the CA
        (MUTUAL, "/api/clusters", ("web",), True),
        (WITH_OUS, "/api/clusters", ("web",), False),
        (WITH_OUS, "/api/clusters", (), False),
        (WITH_OUS, "/api/clusters", ("web", "ops"), True),
        (WITH_OUS, "/api/clusters", None, False),
        # the status endpoint answers health checks without a certificate ...
        (WITH_OUS, "/api/status", None, True),
        (WITH_OUS, "/api/status/", None, True),
        (WITH_OUS, "/api/status-x", None, False),
        (WITH_OUS, "/x/api/status", None, False),
        # so do the Kubernetes probes (a kubelet has no certificate to present) ...
        (WITH_OUS, "/health", None, True),
        (WITH_OUS, "/ready", None, True),
        (WITH_OUS, "/metrics", None, False),
        (WITH_OUS.model_copy(update={"URLPrefix": "/o"}), "/o/ready", None, True),
        # ... unless StatusOUVerify
        (WITH_OUS.model_copy(update={"StatusOUVerify": True}), "/api/status", None, False),
        (WITH_OUS.model_copy(update={"StatusOUVerify": True}), "/ready", None, False),
        (LB_CHECK, "/api/status", None, False),
        (LB_CHECK, "/api/lb-check", None, True),
    ],
)
def test_which_requests_go_on(
    settings: Settings, path: str, units: tuple[str, ...] | None, allowed: bool
) -> None:
    denied = check_client_certificate(settings, path, units)
    assert (denied is None) is allowed
    if denied is not None:
        assert denied.status == 401


def test_denials_say_what_is_missing() -> None:
    missing = check_client_certificate(MUTUAL, "/api/clusters", None)
    assert missing == Denied(
        401, "a client certificate signed by the API's CA is required (mutual TLS)"
    )
    wrong = check_client_certificate(WITH_OUS, "/api/clusters", ("web", "qa"))
    assert wrong is not None
    assert wrong.message == (
        "the client certificate's organizational units (web, qa) are not in SSLValidOUs"
    )


def test_organizational_units_of_a_decoded_certificate() -> None:
    decoded = {
        "subject": (
            (("organizationName", "acme"),),
            (("organizationalUnitName", "dba"),),
            (("organizationalUnitName", "ops"),),
            (("commonName", "alice"),),
        )
    }
    assert organizational_units(decoded) == ("dba", "ops")
    assert organizational_units({"subject": ((("commonName", "bob"),),)}) == ()
    assert organizational_units({}) is None  # what Python reports when none was presented
    assert organizational_units(None) is None


def test_an_open_api_may_listen_beyond_loopback_only_with_client_certificates() -> None:
    anywhere = {"ListenAddress": ":3000"}
    with pytest.raises(ConfigError, match="require client certificates"):
        check_listen_policy(Settings.model_validate({**TLS, **anywhere}))
    check_listen_policy(MUTUAL.model_copy(update=anywhere))


def test_serving_options_follow_the_settings() -> None:
    def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError

    same, plain = serving(app, Settings())  # type: ignore[arg-type]
    assert same is app and plain == {}
    same, https = serving(app, Settings.model_validate(TLS))  # type: ignore[arg-type]
    assert same is app
    assert (https["ssl_certfile"], https["ssl_keyfile"]) == ("server.pem", "server.key")
    assert "ssl_cert_reqs" not in https and "http" not in https
    gated, mutual = serving(app, MUTUAL)  # type: ignore[arg-type]
    assert isinstance(gated, ClientCertificateGate)
    assert mutual["ssl_ca_certs"] == "ca.pem" and mutual["proxy_headers"] is False
    assert mutual["ssl_cert_reqs"] == 1  # ssl.CERT_OPTIONAL: refusals are HTTP answers


# --- the gate ---------------------------------------------------------------------------------


class Recorder:
    """An application that answers 200 and remembers it was called."""

    def __init__(self) -> None:
        self.called = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.called += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[]"})


def call(gate: ClientCertificateGate, path: str, client: tuple[str, int] | None) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": [],
        "query_string": b"",
        "client": client,
    }
    asyncio.run(gate(scope, receive, send))
    return sent


class RecordedPeers(PeerCertificates):
    def __init__(self, known: dict[tuple[str, int], tuple[str, ...] | None]) -> None:
        super().__init__()
        self.known = known

    def lookup(self, address: tuple[str, int] | None) -> tuple[str, ...] | None:
        return self.known.get(address) if address is not None else None


def test_the_gate_answers_401_with_the_envelope_and_passes_the_rest() -> None:
    app = Recorder()
    peers = RecordedPeers({("10.0.0.1", 5000): ("dba",), ("10.0.0.2", 5000): ("web",)})
    gate = ClientCertificateGate(app, settings=WITH_OUS, peers=peers)
    assert call(gate, "/api/clusters", ("10.0.0.1", 5000))[0]["status"] == 200
    for client in [("10.0.0.2", 5000), ("10.0.0.3", 5000), None]:
        start, body = call(gate, "/api/clusters", client)
        assert start["status"] == 401
        answer = json.loads(body["body"])
        assert answer["Code"] == "ERROR" and "client certificate" in answer["Message"]
    assert call(gate, "/api/status", ("10.0.0.3", 5000))[0]["status"] == 200
    assert app.called == 2


def test_an_address_without_a_record_counts_as_no_certificate() -> None:
    peers = PeerCertificates()
    assert peers.lookup(("127.0.0.1", 40000)) is None
    assert len(peers) == 0


def test_the_status_endpoint_answers_without_a_certificate_under_url_prefix_too() -> None:
    # every route, StatusEndpoint included, is served below the prefix
    prefixed = WITH_OUS.model_copy(update={"URLPrefix": "/orchestrator"})
    for path in ("/orchestrator/api/status", "/orchestrator/api/status/"):
        assert check_client_certificate(prefixed, path, None) is None, path
    for path in ("/orchestrator/api/clusters", "/orchestratorx/api/status", "/x/api/status"):
        assert check_client_certificate(prefixed, path, None) is not None, path
    gate = ClientCertificateGate(Recorder(), settings=prefixed, peers=PeerCertificates())
    assert call(gate, "/orchestrator/api/status", ("10.0.0.3", 5000))[0]["status"] == 200
    assert call(gate, "/orchestrator/api/clusters", ("10.0.0.3", 5000))[0]["status"] == 401
