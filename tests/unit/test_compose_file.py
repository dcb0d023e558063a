"""docker-compose.yml, read as a file (no container engine here): valid against the Compose
Specification's JSON schema (the copy in deploy/compose, deploy/compose/README.md says from
where), a health check on every service, no password given inline or left empty, every image
pinned to a version. tests/integration/test_deploy.py runs its configuration on real servers."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "deploy" / "compose" / "compose-spec.json"
# a variable named so holds a secret: it must name a file (``..._FILE``), never hold the value
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|DSN|SIGNINGKEY|PRIVATEKEY", re.IGNORECASE)
# settings of the database images that would let someone in without a password
PASSWORDLESS = {
    "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD",
    "MYSQL_ALLOW_EMPTY_PASSWORD",
    "POSTGRES_HOST_AUTH_METHOD",
}
# a release: three numbers (a suffix naming the base system allowed), PostgreSQL's two
RELEASE = re.compile(r"v?\d+\.\d+\.\d+(-[a-z0-9.]+)?")
TWO_NUMBER_RELEASES = {"postgres": re.compile(r"\d+\.\d+(-[a-z0-9.]+)?")}


@cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    found = compose()["services"]
    assert isinstance(found, dict) and found
    return found


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema_rs.validator_for(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose()) == []


def test_the_schema_check_finds_a_mistake() -> None:
    """The schema is the real one: a misspelt key or a wrong type is reported."""
    broken = json.loads(json.dumps(compose()))
    broken["services"]["nats"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["etcd"]["depends_on"] = "secrets"
    errors = schema_errors(broken)
    assert any("services/nats/healthcheck" in e and "intervall" in e for e in errors), errors
    assert any(e.startswith("services/etcd/depends_on") for e in errors), errors


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_health_check(name: str) -> None:
    check = services()[name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name}'s healthcheck is disabled"
    test = check["test"]
    assert isinstance(test, list) and test[0] == "CMD" and len(test) > 1, (name, test)


def test_services_wait_for_what_they_need_to_be_healthy() -> None:
    for name, service in services().items():
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in services(), (name, needed)
            wanted = "service_completed_successfully" if needed == "secrets" else "service_healthy"
            assert condition == {"condition": wanted}, (name, needed, condition)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping, so it can be checked"
    return {key: str(value) for key, value in environment.items()}


@pytest.mark.parametrize("name", sorted(services()))
def test_no_password_is_inline_or_empty(name: str) -> None:
    service = services()[name]
    mounted = [
        volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
        for volume in service.get("volumes", [])
    ]
    for key, value in _environment(service).items():
        assert key not in PASSWORDLESS, f"{name}: {key}"
        if key.endswith(("_FILE", "File")):  # a secret file, or a setting naming one
            assert value.startswith("/"), f"{name}: {key} names no file"
            assert any(value.startswith(f"{target}/") for target in mounted), (
                f"{name}: {key}={value} is on no mounted secret"
            )
        else:
            assert not SECRET_NAME.search(key), f"{name}: {key} holds a secret inline"
    text = json.dumps(service)
    assert "PASSWORD=" not in text.upper() and "pass:" not in text, f"{name}: inline password"


@pytest.mark.parametrize("name", sorted(services()))
def test_images_are_pinned_to_a_version(name: str) -> None:
    service = services()[name]
    if "build" in service:  # the stack's own image, built from this repository
        assert service["image"] == "orchestrator:local"
        return
    image = service["image"]
    assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} is untagged (latest)"
    repository, tag = image.rsplit(":", 1)
    release = TWO_NUMBER_RELEASES.get(repository, RELEASE)
    assert release.fullmatch(tag), f"{name}: {image} is not pinned to a release"


def test_two_api_replicas_share_one_postgresql_store() -> None:
    apis = {
        name: service
        for name, service in services().items()
        if service.get("command") == ["orchestrator-topology-api"]
    }
    assert sorted(apis) == ["topology-api-1", "topology-api-2"]
    published = sorted(port for service in apis.values() for port in service["ports"])
    assert published == ["127.0.0.1:3000:3000", "127.0.0.1:3001:3000"]
    for service in apis.values():
        environment = _environment(service)
        assert environment["ORCHESTRATOR_BackendDB"] == "postgres"
        assert environment["ORCHESTRATOR_PostgreSQLDSN_FILE"] == "/run/orchestrator/postgres-dsn"
        assert environment["ORCHESTRATOR_AuthenticationMethod"] == "basic"
        assert environment["ORCHESTRATOR_UseSSL"] == "true"
    postgres = _environment(services()["postgres"])
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/orchestrator/password"
