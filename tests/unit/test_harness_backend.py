"""The test harness's choice of backend (local process or container), as pure functions."""

from __future__ import annotations

import pytest

from tests.harness.containers import (
    ETCD,
    NATS,
    POSTGRES,
    Backend,
    Unavailable,
    choose_backend,
    choose_postgres_admin,
    parse_backend,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("found", "docker", "forced", "expected"),
    [
        (["nats-server"], False, None, Backend.PROCESS),
        (["nats-server"], True, None, Backend.PROCESS),
        ([], True, None, Backend.CONTAINER),
        (["nats-server"], True, Backend.CONTAINER, Backend.CONTAINER),
        ([], True, Backend.PROCESS, None),
        (["nats-server"], False, Backend.CONTAINER, None),
        ([], False, None, None),
    ],
)
def test_choose_backend(
    found: list[str], docker: bool, forced: Backend | None, expected: Backend | None
) -> None:
    choice = choose_backend(NATS, found=found, docker_available=docker, forced=forced)
    if expected is None:
        assert isinstance(choice, Unavailable)
        assert "NATS" in choice.reason
        assert "Docker" in choice.reason or "apt-get install nats-server" in choice.reason
    else:
        assert choice is expected


def test_choose_backend_needs_every_binary() -> None:
    assert choose_backend(POSTGRES, found=["postgres"], docker_available=True) is Backend.CONTAINER
    missing = choose_backend(POSTGRES, found=["postgres"], docker_available=False)
    assert isinstance(missing, Unavailable)
    assert "initdb" in missing.reason
    assert "apt-get install postgresql" in missing.reason
    assert "postgres:16" in missing.reason
    unavailable = choose_backend(ETCD, found=[], docker_available=False)
    assert isinstance(unavailable, Unavailable)
    assert "etcd-server" in unavailable.reason


def test_parse_backend() -> None:
    assert parse_backend(None) is None
    assert parse_backend("") is None
    assert parse_backend(" Container ") is Backend.CONTAINER
    with pytest.raises(ValueError, match="ORCHESTRATOR_TEST_BACKEND"):
        parse_backend("podman")


def test_choose_postgres_admin() -> None:
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    choose = choose_postgres_admin
    env = "postgresql://ci@db:5432/postgres"
    assert (
        choose(env_dsn=env, default_dsn=default, default_reachable=True, docker_available=True)
        == env
    )
    assert (
        choose(env_dsn=None, default_dsn=default, default_reachable=True, docker_available=True)
        == default
    )
    assert (
        choose(env_dsn=None, default_dsn=default, default_reachable=False, docker_available=True)
        is Backend.CONTAINER
    )
    refused = choose(
        env_dsn=None, default_dsn=default, default_reachable=False, docker_available=False
    )
    assert isinstance(refused, Unavailable)
    assert "ORCHESTRATOR_TEST_PG_DSN" in refused.reason
