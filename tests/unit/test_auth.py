"""Authentication methods and roles (orchestrator_api.auth), as pure decisions."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from orchestrator_api.auth import Denied, Principal, Role, authorize, check_listen_policy
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import ConfigError

pytestmark = pytest.mark.unit


def settings(**values: Any) -> Settings:
    return Settings.model_validate(values)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


BASIC = {"AuthenticationMethod": "basic", "HTTPAuthUser": "ops", "HTTPAuthPassword": "pw"}


@pytest.mark.parametrize("method", ["", "none"])
def test_open_methods_let_everyone_change_things(method: str) -> None:
    found = authorize(settings(AuthenticationMethod=method), {}, Role.ADMIN)
    assert found == Principal("anonymous", Role.ADMIN)


def test_basic() -> None:
    config = settings(**BASIC)
    assert authorize(config, basic("ops", "pw"), Role.ADMIN) == Principal("ops", Role.ADMIN)
    missing = authorize(config, {}, Role.READ)
    assert isinstance(missing, Denied)
    assert missing.status == 401
    assert missing.headers == {"WWW-Authenticate": 'Basic realm="orchestrator"'}
    wrong = authorize(config, basic("ops", "nope"), Role.READ)
    assert isinstance(wrong, Denied)
    assert wrong.status == 401
    garbage = authorize(config, {"authorization": "Basic %%%"}, Role.READ)
    assert isinstance(garbage, Denied)
    assert garbage.status == 401
    # basic has no read-only user
    readonly = authorize(config, basic("readonly", "x"), Role.READ)
    assert isinstance(readonly, Denied)


def test_multi_adds_a_read_only_user() -> None:
    config = settings(**{**BASIC, "AuthenticationMethod": "multi"})
    assert authorize(config, basic("readonly", "anything"), Role.READ) == Principal(
        "readonly", Role.READ
    )
    denied = authorize(config, basic("readonly", "anything"), Role.ADMIN)
    assert isinstance(denied, Denied)
    assert denied.status == 403
    assert authorize(config, basic("ops", "pw"), Role.ADMIN) == Principal("ops", Role.ADMIN)


def test_proxy_trusts_the_header_and_power_users() -> None:
    config = settings(AuthenticationMethod="proxy", PowerAuthUsers=["alice"])
    assert authorize(config, {"X-Forwarded-User": "alice"}, Role.ADMIN) == Principal(
        "alice", Role.ADMIN
    )
    bob = authorize(config, {"x-forwarded-user": "bob"}, Role.ADMIN)
    assert isinstance(bob, Denied)
    assert bob.status == 403
    assert authorize(config, {"x-forwarded-user": "bob"}, Role.READ) == Principal("bob", Role.READ)
    nobody = authorize(config, {}, Role.READ)
    assert isinstance(nobody, Denied)
    assert nobody.status == 401
    everyone = settings(AuthenticationMethod="proxy", AuthUserHeader="X-User")
    assert authorize(everyone, {"X-User": "carol"}, Role.ADMIN) == Principal("carol", Role.ADMIN)


def test_tokens_with_roles() -> None:
    config = settings(AuthenticationMethod="token", APITokens={"adm1n": "admin", "r3ad": "read"})
    admin = authorize(config, {"Authorization": "Bearer adm1n"}, Role.ADMIN)
    assert isinstance(admin, Principal)
    assert admin.role is Role.ADMIN
    reader = authorize(config, {"Authorization": "Bearer r3ad"}, Role.ADMIN)
    assert isinstance(reader, Denied)
    assert reader.status == 403
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        denied = authorize(config, headers, Role.READ)
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
