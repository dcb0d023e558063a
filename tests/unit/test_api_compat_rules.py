"""The pure rules behind issue 10's routes and commands: orchestrator's OSC control replicas,
the key-value pairs of submit-masters-to-kv-stores, Go's duration text, ``URLPrefix``, and the
raft words for what the API heard of the election."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator_api.http.routes_raft import leader_name, raft_state
from orchestrator_api.kv import HostAddresses, kv_prefix, literal_addresses, master_kv_pairs
from orchestrator_api.osc import hostname_filters_match, osc_replicas
from orchestrator_api.wire.timefmt import go_duration
from orchestrator_shared.bus import LeaderEvent, LeaderIdentity
from orchestrator_shared.config import Settings, load_settings, normalize_url_prefix
from orchestrator_shared.errors import ConfigError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    ThreadState,
)
from orchestrator_shared.topology import Cluster, TopologyInstance, build_topology

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
_NOWHERE = Path("/nonexistent/orchestrator.conf.json")


def snap(port: int, master: int | None = None) -> InstanceSnapshot:
    channels = ()
    if master is not None:
        channels = (
            ReplicationChannel(
                master_key=f"db:{master}",
                io_thread=ThreadState.RUNNING,
                sql_thread=ThreadState.RUNNING,
            ),
        )
    return InstanceSnapshot(
        key=f"db:{port}",
        probe=ProbeFacts(ok=True, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
        server_id=port,
        read_only=master is not None,
        channels=channels,
    )


def cluster(links: dict[int, int | None]) -> Cluster:
    """A cluster from ``{port: master port}``."""
    topology = build_topology(snap(port, master) for port, master in links.items())
    assert len(topology.clusters) == 1
    return next(iter(topology.clusters.values()))


def ports(nodes: list[TopologyInstance]) -> list[int]:
    return [node.key.port for node in nodes]


def everyone(_node: TopologyInstance) -> bool:
    return True


# --- OSC control replicas -------------------------------------------------------------------


def test_osc_star_picks_two_first_tier_leaves_in_key_order() -> None:
    star = cluster({1: None, 4: 1, 2: 1, 3: 1})
    assert ports(osc_replicas(star, is_valid=everyone)) == [2, 3]


def test_osc_one_intermediate_master_then_two_of_its_replicas_busiest_first() -> None:
    # 1 <- 2 <- (3, 4 <- 6, 5 <- 7 <- 9), 1 <- 8: 2 is the only intermediate master; of its
    # replicas 4 and 5 have one replica each, 3 none: 4 and 5 (key order on the tie); third
    # tier: 7 (one replica) before 6 (none); then the first-tier leaf 8
    shape = cluster({1: None, 2: 1, 3: 2, 4: 2, 5: 2, 6: 4, 7: 5, 9: 7, 8: 1})
    assert ports(osc_replicas(shape, is_valid=everyone)) == [2, 4, 5, 7, 6, 8]


def test_osc_two_busiest_intermediate_masters_one_replica_each() -> None:
    # 2 has one replica, 3 has two, 4 has three: 4 and 3 (most replicas first), then the first
    # replica of each; the one first-tier leaf, 9
    shape = cluster({1: None, 2: 1, 3: 1, 4: 1, 9: 1, 20: 2, 30: 3, 31: 3, 40: 4, 41: 4, 42: 4})
    assert ports(osc_replicas(shape, is_valid=everyone)) == [4, 3, 40, 30, 9]


def test_osc_leaves_out_invalid_and_ignored_instances() -> None:
    star = cluster({1: None, 2: 1, 3: 1, 4: 1, 5: 1})
    valid = lambda node: node.key.port != 2  # noqa: E731
    assert ports(osc_replicas(star, is_valid=valid, ignore=[r":3$"])) == [4, 5]


def test_hostname_filters_ip_exact_else_regex_on_host_port() -> None:
    key = InstanceKey("10.0.0.38", 3306)
    assert not hostname_filters_match(key, ["10.0.0.3"])  # an IP: that host exactly
    assert hostname_filters_match(key, ["10.0.0.38"])
    assert hostname_filters_match(key, [r"\.38:33"])
    assert not hostname_filters_match(key, [])


# --- key-value pairs ------------------------------------------------------------------------


def test_kv_pairs_in_orchestrators_order_and_prefix_forms() -> None:
    master = InstanceKey("db-1.example", 3306)
    pairs = master_kv_pairs("mysql/master", "bars", master, HostAddresses("10.0.0.5", "fd00::5"))
    assert pairs == [
        ("mysql/master/bars", "db-1.example:3306"),
        ("mysql/master/bars/hostname", "db-1.example"),
        ("mysql/master/bars/port", "3306"),
        ("mysql/master/bars/ipv4", "10.0.0.5"),
        ("mysql/master/bars/ipv6", "fd00::5"),
    ]
    assert master_kv_pairs("x", "", master, HostAddresses()) == []  # no alias, no pairs
    assert (kv_prefix("/"), kv_prefix("a/b///"), kv_prefix("")) == ("/", "a/b/", "/")
    assert literal_addresses("127.0.0.1") == HostAddresses(ipv4="127.0.0.1")
    assert literal_addresses("::1") == HostAddresses(ipv6="::1")
    assert literal_addresses("db-1.example") is None


# --- Go durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "text"),
    [
        (0, "0s"),
        (850, "850ns"),
        (1_500, "1.5\u00b5s"),
        (12_340_000, "12.34ms"),
        (2_500_000_000, "2.5s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
        (61 * 10**9 + 10**6, "1m1.001s"),
    ],
)
def test_go_duration_text(nanos: int, text: str) -> None:
    assert go_duration(nanos) == text


# --- URLPrefix --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [("", ""), ("/", ""), ("orchestrator/", "/orchestrator"), ("/a/b", "/a/b"), ("//x", "/x")],
)
def test_url_prefix_is_read_as_orchestrator_reads_it(given: str, normalized: str) -> None:
    assert normalize_url_prefix(given) == normalized
    assert Settings(URLPrefix=given).URLPrefix == normalized


@pytest.mark.parametrize("bad", ["/a b", "/a?b", "/a#b", "a//b", "/a/../b", "/%2e"])
def test_a_malformed_url_prefix_is_one_line_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"ORCHESTRATOR_URLPrefix": bad}, default_path=_NOWHERE)
    message = str(caught.value)
    assert message.startswith("URLPrefix: expected a URL path such as /orchestrator")
    assert "\n" not in message


# --- raft words ---------------------------------------------------------------------------------


def test_raft_state_and_leader_name_follow_the_leader_events() -> None:
    identity = LeaderIdentity(id="w-1", host="db-host", pid=7, started_at=NOW)
    leading = LeaderEvent(leader=identity, fencing_token=3, observed_at=NOW)
    none = LeaderEvent(leader=None, observed_at=NOW)
    assert raft_state(leading) == "Leader"
    assert raft_state(none) == "Candidate"
    assert raft_state(None) == "Follower"
    assert leader_name(leading) == "w-1@db-host"
    assert leader_name(none) == ""
