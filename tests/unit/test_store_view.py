"""The store's pure parts: the fleet view (hint resolution, search, aliases), SQL rendering."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator_api.store.postgres import numbered
from orchestrator_api.store.schema import MIGRATIONS, Dialect, pending, render
from orchestrator_api.store.view import ClusterSetting, FleetView
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot, ProbeFacts, ReplicationChannel

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def snap(key: str, master: str | None = None, *, alias: str = "") -> InstanceSnapshot:
    channels = (ReplicationChannel(master_key=master),) if master else ()
    return InstanceSnapshot(
        key=key,
        probe=ProbeFacts(ok=True, checked_at=NOW, attempted_at=NOW, last_seen_at=NOW),
        read_only=master is not None,
        channels=channels,
        suggested_cluster_alias=alias,
    )


def view(*snapshots: InstanceSnapshot, **settings: ClusterSetting) -> FleetView:
    return FleetView({s.instance_key: s for s in snapshots}, settings)


def test_a_hint_resolves_by_name_then_alias_then_instance() -> None:
    fleet = view(
        snap("a:3306", alias="shop"),
        snap("b:3306", "a:3306"),
        snap("a:3307", alias="b:3306"),  # an alias that looks like another cluster's member
    )
    assert fleet.resolve_cluster("a:3306") == "a:3306"
    assert fleet.resolve_cluster("shop") == "a:3306"
    assert fleet.resolve_cluster("b:3306") == "a:3307"  # alias before instance, as orchestrator
    assert fleet.resolve_cluster(" b ") == "a:3306"  # a bare host of one known instance
    assert fleet.resolve_cluster("a") == "a:3306"  # default port 3306 exists
    assert fleet.resolve_cluster("x:1") is None
    assert fleet.resolve_cluster("") is None


def test_a_bare_host_of_several_clusters_is_ambiguous() -> None:
    fleet = view(snap("h:3307"), snap("h:3308"))
    assert fleet.resolve_cluster("h") is None


def test_alias_override_wins_and_frees_the_suggested_alias() -> None:
    fleet = view(
        snap("a:3306", alias="shop"),
        **{"a:3306": ClusterSetting(alias_override="store", domain="d")},
    )
    summary = fleet.summaries["a:3306"]
    assert (summary.alias, summary.domain, summary.count_instances) == ("store", "d", 1)
    assert fleet.cluster_by_alias("store") == "a:3306"
    assert fleet.cluster_by_alias("shop") is None


def test_search_is_case_insensitive_on_keys_and_aliases() -> None:
    fleet = view(snap("db-east:3306", alias="Orders"), snap("db-west:3306"))
    assert [str(n.key) for n in fleet.search("EAST")] == ["db-east:3306"]
    assert [str(n.key) for n in fleet.search("orders")] == ["db-east:3306"]
    assert len(fleet.search("db-")) == 2


def test_instances_come_in_key_order_with_their_cluster() -> None:
    fleet = view(snap("c:1", "a:1"), snap("a:1"), snap("b:1", "a:1"))
    assert [str(n.key) for n in fleet.all_instances()] == ["a:1", "b:1", "c:1"]
    assert [n.depth for n in fleet.cluster_instances("a:1")] == [0, 1, 1]
    node = fleet.instance(InstanceKey.parse("c:1"))
    assert node is not None
    assert node.cluster_name == "a:1"
    assert fleet.instance(InstanceKey.parse("z:1")) is None


def test_placeholders_are_numbered_for_postgres() -> None:
    assert numbered("SELECT ? WHERE a = ? AND b = ?") == "SELECT $1 WHERE a = $2 AND b = $3"
    assert numbered("SELECT 1") == "SELECT 1"


def test_migrations_are_numbered_in_order_and_render_for_both_dialects() -> None:
    versions = [migration.version for migration in MIGRATIONS]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    assert [m.version for m in pending({1})] == versions[1:]
    for migration in MIGRATIONS:
        for statement in migration.statements:
            for dialect in Dialect:
                assert "{" not in render(statement, dialect)
