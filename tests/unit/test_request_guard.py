"""The Host allow-list and the cross-site check (orchestrator_api.http.request_guard)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator_api.http.request_guard import (
    allowed_hosts,
    check_host,
    check_mutation_method,
    check_same_origin,
    host_name,
)
from orchestrator_shared.config import Settings

pytestmark = pytest.mark.unit


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def test_default_allow_list_is_loopback_and_the_listen_host() -> None:
    assert allowed_hosts(settings()) == {"localhost", "127.0.0.1", "::1"}
    listed = allowed_hosts(
        settings(ListenAddress="10.0.0.5:3000", HTTPAllowedHosts=["Orchestrator.svc", "[fd00::1]"])
    )
    assert listed == {"localhost", "127.0.0.1", "::1", "10.0.0.5", "orchestrator.svc", "fd00::1"}
    # all interfaces names no host of its own
    assert allowed_hosts(settings(ListenAddress=":3000")) == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts(settings(HTTPAllowedHosts=["*"])) is None


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost:3000", "localhost"),
        ("LOCALHOST", "localhost"),
        ("[::1]:3000", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("evil.example:3000", "evil.example"),
    ],
)
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


def test_check_host() -> None:
    allowed = allowed_hosts(settings())
    assert check_host("127.0.0.1:3000", allowed) is None
    assert check_host("[::1]:3000", allowed) is None
    assert check_host(None, allowed) is None  # HTTP/1.0: not a browser
    refused = check_host("rebound.evil.example:3000", allowed)
    assert refused is not None and refused.status == 403
    assert "rebound.evil.example" in refused.message and "HTTPAllowedHosts" in refused.message
    assert check_host("anything", None) is None


HOST = "127.0.0.1:3000"


def test_clients_that_are_not_browsers_pass() -> None:
    assert check_same_origin({}, scheme="http", host_header=HOST) is None


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_same_origin_fetches_pass(site: str) -> None:
    headers = {"sec-fetch-site": site, "origin": "http://127.0.0.1:3000"}
    assert check_same_origin(headers, scheme="http", host_header=HOST) is None


@pytest.mark.parametrize("site", ["cross-site", "same-site", "Cross-Site"])
def test_cross_site_fetches_are_refused(site: str) -> None:
    refused = check_same_origin({"sec-fetch-site": site}, scheme="http", host_header=HOST)
    assert refused is not None and refused.status == 403
    assert "Sec-Fetch-Site" in refused.message


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://127.0.0.1:3001",
        "http://localhost:3000",  # another name is another origin
        "null",
        "file://",
        "http://127.0.0.1:3000.evil.example",
    ],
)
def test_other_origins_are_refused(origin: str) -> None:
    refused = check_same_origin({"origin": origin}, scheme="http", host_header=HOST)
    assert refused is not None and refused.status == 403
    assert "Origin" in refused.message


def test_origins_that_match() -> None:
    assert (
        check_same_origin({"origin": "http://127.0.0.1:3000"}, scheme="http", host_header=HOST)
        is None
    )
    # a default port written or not
    assert (
        check_same_origin(
            {"origin": "https://o.example"}, scheme="https", host_header="o.example:443"
        )
        is None
    )
    # a gateway ending TLS: https page, http request, same Host without a port
    assert (
        check_same_origin({"origin": "https://o.example"}, scheme="http", host_header="o.example")
        is None
    )
    assert (
        check_same_origin(
            {"origin": "https://o.example"}, scheme="http", host_header="o.example:8080"
        )
        is not None
    )


def test_get_mutations() -> None:
    assert check_mutation_method(settings(), "GET") is None
    refused = check_mutation_method(settings(HTTPRefuseGETMutations=True), "GET")
    assert refused is not None and refused.status == 405
    assert check_mutation_method(settings(HTTPRefuseGETMutations=True), "POST") is None
