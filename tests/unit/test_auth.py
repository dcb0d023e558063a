"""Authentication methods and roles (orchestrator_api.auth), as pure decisions."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator_api.auth import (
    Denied,
    Principal,
    Role,
    authorize,
    check_listen_policy,
    is_trusted_proxy,
    startup_warnings,
    token_name,
)
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError

pytestmark = pytest.mark.unit


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


LOCAL = "127.0.0.1"  # the peer: a trusted proxy by default
BASIC = {"AuthenticationMethod": "basic", "HTTPAuthUser": "ops", "HTTPAuthPassword": "pw"}


@pytest.mark.parametrize("method", ["", "none"])
def test_open_methods_let_everyone_change_things(method: str) -> None:
    found = authorize(settings(AuthenticationMethod=method), {}, Role.ADMIN, peer=LOCAL)
    assert found == Principal("anonymous", Role.ADMIN)


def test_basic() -> None:
    config = settings(**BASIC)
    assert authorize(config, basic("ops", "pw"), Role.ADMIN, peer=LOCAL) == Principal(
        "ops", Role.ADMIN
    )
    missing = authorize(config, {}, Role.READ, peer=LOCAL)
    assert isinstance(missing, Denied)
    assert missing.status == 401
    assert missing.headers == {"WWW-Authenticate": 'Basic realm="orchestrator"'}
    wrong = authorize(config, basic("ops", "nope"), Role.READ, peer=LOCAL)
    assert isinstance(wrong, Denied)
    assert wrong.status == 401
    garbage = authorize(config, {"authorization": "Basic %%%"}, Role.READ, peer=LOCAL)
    assert isinstance(garbage, Denied)
    assert garbage.status == 401
    # basic has no read-only user
    readonly = authorize(config, basic("readonly", "x"), Role.READ, peer=LOCAL)
    assert isinstance(readonly, Denied)


@pytest.mark.parametrize(
    ("read_only_password", "given", "accepted"),
    [("", "anything", True), ("look", "anything", False), ("look", "look", True)],
)
def test_multi_adds_a_read_only_user(read_only_password: str, given: str, accepted: bool) -> None:
    """orchestrator accepts ``readonly`` with any password; HTTPAuthReadOnlyPassword asks one."""
    config = settings(
        **{
            **BASIC,
            "AuthenticationMethod": "multi",
            "HTTPAuthReadOnlyPassword": read_only_password,
        }
    )
    found = authorize(config, basic("readonly", given), Role.READ, peer=LOCAL)
    if not accepted:
        assert isinstance(found, Denied)
        assert found.status == 401
        return
    assert found == Principal("readonly", Role.READ)
    denied = authorize(config, basic("readonly", given), Role.ADMIN, peer=LOCAL)
    assert isinstance(denied, Denied)
    assert denied.status == 403
    assert authorize(config, basic("ops", "pw"), Role.ADMIN, peer=LOCAL) == Principal(
        "ops", Role.ADMIN
    )


def test_proxy_trusts_the_header_and_power_users() -> None:
    config = settings(AuthenticationMethod="proxy", PowerAuthUsers=["alice"])
    assert authorize(config, {"X-Forwarded-User": "alice"}, Role.ADMIN, peer=LOCAL) == Principal(
        "alice", Role.ADMIN
    )
    bob = authorize(config, {"x-forwarded-user": "bob"}, Role.ADMIN, peer=LOCAL)
    assert isinstance(bob, Denied)
    assert bob.status == 403
    assert authorize(config, {"x-forwarded-user": "bob"}, Role.READ, peer=LOCAL) == Principal(
        "bob", Role.READ
    )
    nobody = authorize(config, {}, Role.READ, peer=LOCAL)
    assert isinstance(nobody, Denied)
    assert nobody.status == 401
    everyone = settings(AuthenticationMethod="proxy", AuthUserHeader="X-User", PowerAuthUsers=["*"])
    assert authorize(everyone, {"X-User": "carol"}, Role.ADMIN, peer=LOCAL) == Principal(
        "carol", Role.ADMIN
    )


def test_proxy_power_users_default_to_nobody() -> None:
    config = settings(AuthenticationMethod="proxy")
    carol = authorize(config, {"X-Forwarded-User": "carol"}, Role.ADMIN, peer=LOCAL)
    assert isinstance(carol, Denied) and carol.status == 403
    assert authorize(config, {"X-Forwarded-User": "carol"}, Role.READ, peer=LOCAL) == Principal(
        "carol", Role.READ
    )
    assert startup_warnings(config) == [
        "AuthenticationMethod is proxy and PowerAuthUsers is empty: nobody may change the "
        'topology (list the users, or ["*"] for every user the proxy names)'
    ]
    assert startup_warnings(settings(AuthenticationMethod="proxy", PowerAuthUsers=["a"])) == []
    assert startup_warnings(settings()) == []


@pytest.mark.parametrize("peer", ["10.0.0.9", "192.168.1.1", "fd00::1", None, "not-an-address"])
def test_proxy_header_from_an_untrusted_peer_is_refused(peer: str | None) -> None:
    config = settings(AuthenticationMethod="proxy", PowerAuthUsers=["*"])
    denied = authorize(config, {"X-Forwarded-User": "alice"}, Role.READ, peer=peer)
    assert isinstance(denied, Denied) and denied.status == 401
    assert "TrustedProxyCIDRs" in denied.message


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"])
def test_proxy_header_from_loopback_is_trusted_by_default(peer: str) -> None:
    config = settings(AuthenticationMethod="proxy", PowerAuthUsers=["*"])
    found = authorize(config, {"X-Forwarded-User": "alice"}, Role.ADMIN, peer=peer)
    assert found == Principal("alice", Role.ADMIN)


def test_trusted_proxy_cidrs() -> None:
    config = settings(
        AuthenticationMethod="proxy", PowerAuthUsers=["*"], TrustedProxyCIDRs=["10.1.0.0/16"]
    )
    assert is_trusted_proxy(config, "10.1.200.3")
    assert not is_trusted_proxy(config, "127.0.0.1")  # loopback only by default
    assert not is_trusted_proxy(config, "10.2.0.1")
    # other methods ignore the peer
    assert authorize(settings(), {}, Role.ADMIN, peer="10.2.0.1") == Principal(
        "anonymous", Role.ADMIN
    )
    with pytest.raises(ValidationError, match="not an address or CIDR"):
        settings(TrustedProxyCIDRs=["10.0.0.0/33"])


def test_tokens_with_roles() -> None:
    config = settings(AuthenticationMethod="token", APITokens={"adm1n": "admin", "r3ad": "read"})
    admin = authorize(config, {"Authorization": "Bearer adm1n"}, Role.ADMIN, peer=LOCAL)
    assert isinstance(admin, Principal)
    assert admin.role is Role.ADMIN
    reader = authorize(config, {"Authorization": "Bearer r3ad"}, Role.ADMIN, peer=LOCAL)
    assert isinstance(reader, Denied)
    assert reader.status == 403
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        denied = authorize(config, headers, Role.READ, peer=LOCAL)
        assert isinstance(denied, Denied)
        assert denied.status == 401


def test_open_api_only_on_loopback() -> None:
    check_listen_policy(settings())  # default 127.0.0.1:3000
    check_listen_policy(settings(ListenAddress="[::1]:3000"))
    check_listen_policy(settings(ListenAddress="localhost:3000"))
    check_listen_policy(settings(ListenAddress=":3000", AuthenticationMethod="none"))
    with pytest.raises(
        ConfigError, match=r"^AuthenticationMethod: unset, so the API would be open"
    ):
        check_listen_policy(settings(ListenAddress=":3000"))
    with pytest.raises(ConfigError):
        check_listen_policy(settings(ListenAddress="10.0.0.5:3000"))


def test_a_token_is_named_by_a_fingerprint_not_its_characters() -> None:
    token = "s3cr3t-token-abcdef"
    config = settings(AuthenticationMethod="token", APITokens={token: "admin"})
    who = authorize(config, {"Authorization": f"Bearer {token}"}, Role.ADMIN, peer=LOCAL)
    assert isinstance(who, Principal)
    assert who.user == token_name(token)
    assert who.user.startswith("token:")
    assert token[:3] not in who.user
    assert token_name(token) != token_name(token + "x")
