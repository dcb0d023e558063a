"""The crawl allow-list (orchestrator_shared.host_policy): which hosts any service may connect
to, from ``DiscoveryAllowedHostnameFilters`` and ``DiscoveryIgnoreHostnameFilters``; its start-up
checks; and the pure places that ask it (discovery's scheduler with a fake fleet, the recovery
worker's command responder with a fake message, recovery's connections)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest

from orchestrator_recovery.mysql import Links, MySQLAccess, StatementFailed
from orchestrator_recovery.operations.commands import CommandResponder
from orchestrator_shared.bus import CommandReply, CommandRequest
from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.events import AuditEvent
from orchestrator_shared.host_policy import HostPolicy, parse_allowed_entry
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import InvalidPattern
from tests.unit.test_command_responder import FakeMsg, responder

pytestmark = pytest.mark.unit

POLICY = HostPolicy(
    allowed=(r"\.db\.example\.com$", "10.1.0.0/16", "192.0.2.7", "fd00::/8"),
    ignored=("^skip-",),
)


@pytest.mark.parametrize(
    "host",
    [
        "db1.db.example.com",
        "10.1.2.3",
        "10.1.255.255",
        "192.0.2.7",
        "fd00::1",
    ],
)
def test_hosts_an_entry_allows(host: str) -> None:
    assert POLICY.is_allowed(host)
    assert POLICY.refusal(InstanceKey(host, 3306)) == ""


@pytest.mark.parametrize(
    "host",
    [
        "db1.db.example.com.attacker.net",  # the pattern is anchored
        "db1.example.com",
        "10.2.0.1",
        "192.0.2.8",
        "127.0.0.1",
        "::1",
        "ten.1.0.0",
        "localhost",
    ],
)
def test_hosts_no_entry_allows_are_refused_with_the_setting_named(host: str) -> None:
    key = InstanceKey(host, 3306)
    assert not POLICY.is_allowed(host)
    assert POLICY.refusal(key) == (
        f"host {key.host} is not allowed by DiscoveryAllowedHostnameFilters; not contacted"
    )


def test_a_network_allows_addresses_only_never_a_name_it_would_resolve_to() -> None:
    policy = HostPolicy(allowed=("127.0.0.0/8",))
    assert policy.is_allowed("127.0.0.2")
    assert not policy.is_allowed("localhost")  # no DNS: what a name resolves to is not checked


def test_an_empty_list_allows_every_host_and_the_ignore_filters_still_apply() -> None:
    policy = HostPolicy(ignored=("^skip-",))
    assert not policy.restricted
    assert policy.refusal(InstanceKey("anything.anywhere", 1)) == ""
    assert policy.refusal(InstanceKey("skip-me", 1)) == (
        "matches DiscoveryIgnoreHostnameFilters ('^skip-'); not discovered"
    )
    assert POLICY.refusal(InstanceKey("skip-x.db.example.com", 1)).startswith("matches Discovery")


def test_recovery_honours_the_allow_list_but_not_the_discovery_ignore_filters() -> None:
    settings = Settings.model_validate(
        {
            "DiscoveryAllowedHostnameFilters": ["^db"],
            "DiscoveryIgnoreHostnameFilters": ["^db2"],
        }
    )
    recovery, discovery = (
        HostPolicy.from_settings(settings),
        HostPolicy.from_settings(settings, discovery=True),
    )
    assert recovery.refusal(InstanceKey("db2", 1)) == ""
    assert discovery.refusal(InstanceKey("db2", 1)).startswith("matches")
    assert recovery.refusal(InstanceKey("web1", 1)) and discovery.refusal(InstanceKey("web1", 1))


def test_entries_are_networks_or_patterns() -> None:
    assert str(parse_allowed_entry(" 10.0.0.0/8 ")) == "10.0.0.0/8"
    assert str(parse_allowed_entry("10.0.0.1/8")) == "10.0.0.0/8"  # host bits ignored
    assert str(parse_allowed_entry("::1")) == "::1/128"
    with pytest.raises(InvalidPattern):
        parse_allowed_entry("db(")
    with pytest.raises(ValueError, match="empty entry"):
        parse_allowed_entry("  ")


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        (["db("], "DiscoveryAllowedHostnameFilters: expected a regular expression, 'db(' is"),
        ([""], "DiscoveryAllowedHostnameFilters: an empty entry would allow every host"),
        (["(a)\\1"], "DiscoveryAllowedHostnameFilters: expected a regular expression"),
    ],
)
def test_a_bad_entry_stops_start_up_with_one_line(
    tmp_path: Path, entries: list[str], expected: str
) -> None:
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(json.dumps({"DiscoveryAllowedHostnameFilters": entries}))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


def test_start_up_warns_of_refused_seeds_and_unanchored_patterns(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.conf.json"
    path.write_text(
        json.dumps(
            {
                "DiscoveryAllowedHostnameFilters": ["^db1$", "db", "10.0.0.0/8"],
                "DiscoverySeeds": ["db1:3306", "192.168.0.1:3306", "10.0.0.5:3306"],
            }
        )
    )
    loaded = load_settings(path, environ={"ORCHESTRATOR_DiscoveryAllowedHostnameFilters": ""})
    assert loaded.settings.DiscoveryAllowedHostnameFilters == ()  # "" from the env: no list
    assert not [w for w in loaded.warnings if "DiscoveryAllowed" in w]
    loaded = load_settings(path, environ={})
    assert [w for w in loaded.warnings if "DiscoveryAllowed" in w] == [
        "DiscoverySeeds: 192.168.0.1:3306 is not allowed by DiscoveryAllowedHostnameFilters; "
        "it will not be contacted",
        "DiscoveryAllowedHostnameFilters: 'db' is not anchored with $: it also allows every "
        "host name that contains a match",
    ]


# --- recovery: the responder and the connections ---------------------------------------------


def _responder(audits: list[AuditEvent], ran: list[CommandRequest]) -> CommandResponder:
    async def operation(request: CommandRequest) -> CommandReply:
        ran.append(request)
        return CommandReply(ok=True, operation=request.operation)

    return responder(
        audits,
        hosts=HostPolicy(allowed=("^db",)),
        **{"relocate": operation, "relocate-replicas": operation},
    )


@pytest.mark.parametrize(
    "request_",
    [
        CommandRequest(operation="relocate", instance="evil:3306", destination="db1:3306"),
        CommandRequest(operation="relocate", instance="db2:3306", destination="evil:3306"),
        CommandRequest(
            operation="relocate-replicas",
            instance="db1:3306",
            destination="db2:3306",
            arguments={"replicas": "db3:3306,evil:3306"},
        ),
    ],
)
async def test_a_command_naming_a_refused_host_is_refused_and_audited(
    request_: CommandRequest,
) -> None:
    audits: list[AuditEvent] = []
    ran: list[CommandRequest] = []
    msg = FakeMsg(request_)
    await _responder(audits, ran)._answer(cast("Any", msg))
    [answer] = msg.answers
    assert answer.error == (
        "command refused: evil:3306: host evil is not allowed by DiscoveryAllowedHostnameFilters;"
        " not contacted"
    )
    assert ran == []
    [audit] = audits
    assert audit.type == "command-refused" and "evil:3306: host evil" in audit.message


async def test_a_command_naming_allowed_hosts_runs() -> None:
    audits: list[AuditEvent] = []
    ran: list[CommandRequest] = []
    msg = FakeMsg(CommandRequest(operation="relocate", instance="db2:3306", destination="db1:3306"))
    await _responder(audits, ran)._answer(cast("Any", msg))
    assert [answer.ok for answer in msg.answers] == [True]
    assert len(ran) == 1 and audits == []


async def test_recovery_never_connects_to_a_refused_host() -> None:
    access = MySQLAccess(user="u", password="p", hosts=HostPolicy(allowed=("^db",)))
    async with Links(access, statement_timeout=1) as links:
        # port 9 of a TEST-NET address: a connect attempt would time out, not fail at once
        started = asyncio.get_running_loop().time()
        with pytest.raises(StatementFailed) as caught:
            await links.rows(InstanceKey("192.0.2.1", 9), "SELECT 1")
        assert asyncio.get_running_loop().time() - started < 0.5
    assert caught.value.statement == "connect"
    assert "not allowed by DiscoveryAllowedHostnameFilters" in caught.value.message
