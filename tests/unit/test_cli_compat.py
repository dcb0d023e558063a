"""``orchestrator -c`` commands of issue 10 against canned answers (orchestrator's recorded ones
where there are): the exact path orchestrator-client calls, and what it prints."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator_cli.compat import broken, dominant_dc, instance_status, jq_raw
from tests.unit.test_cli_client import FakeApi, api_path, run, sample

pytestmark = pytest.mark.unit

KEY = {"Hostname": "127.0.0.1", "Port": 22307}


def replica(port: int, **fields: Any) -> dict[str, Any]:
    instance = copy.deepcopy(sample("instance"))
    instance["Key"] = {"Hostname": "127.0.0.1", "Port": port}
    instance.update(fields)
    return instance


def paths(api: FakeApi) -> list[str]:
    return [api_path(request) for request in api.requests]


def test_instance_status_is_orchestrators_description() -> None:
    instance = sample("instance")  # orchestrator's own answer for a MariaDB GTID replica
    assert instance_status(instance) == "[0s,ok,10.11.19-MariaDB-0+deb12u1-log,ro,ROW,>>,GTID]"
    stopped = replica(22307, ReplicationSQLThreadState=0, ReplicationIOThreadState=0)
    assert instance_status(stopped).startswith("[null,nonreplicating,")
    lagging = replica(22307, SecondsBehindMaster={"Int64": 60, "Valid": True})
    lagging["ReplicationLagSeconds"] = {"Int64": 60, "Valid": True}
    assert instance_status(lagging).startswith("[60s,lag,")
    master = sample("master")
    assert instance_status(master).startswith("[0s,ok,")
    assert ",rw," in instance_status(master)
    odd = replica(22307, IsLastCheckValid=False, IsDowntimed=True, GtidErrant="0-2-5")
    assert instance_status(odd).startswith("[unknown,invalid,")
    assert instance_status(odd).endswith(",GTID:errant,downtimed]")
    no_binlog = replica(22307, LogBinEnabled=False)
    assert ",ro,nobinlog," in instance_status(no_binlog)


def test_client_filters() -> None:
    healthy = replica(22307)
    failed = replica(22308, ReplicationSQLThreadRuning=False, LastSQLError="Duplicate entry")
    stopped = replica(22309, ReplicationSQLThreadRuning=False, ReplicationIOThreadRuning=False)
    assert [broken(r) for r in (healthy, failed, stopped)] == [False, True, False]
    assert dominant_dc([{"DataCenter": "b"}, {"DataCenter": "a"}, {"DataCenter": "b"}]) == "b"
    assert dominant_dc([{"DataCenter": "a"}, {"DataCenter": "c"}]) == "c"  # sort -nr on a tie
    assert dominant_dc([{"DataCenter": ""}]) == ""
    assert dominant_dc([]) == ""
    assert [jq_raw(v) for v in ("x", None, True, 5)] == ["x", "null", "true", "5"]


def test_read_commands_call_orchestrator_clients_paths() -> None:
    two = replica(
        22308, ReplicationSQLThreadRuning=False, ReplicationSQLThreadState=0, LastSQLError="boom"
    )
    three = replica(
        22309,
        ReplicationIOThreadRuning=False,
        ReplicationSQLThreadRuning=False,
        ReplicationIOThreadState=0,
        ReplicationSQLThreadState=0,
    )
    api = FakeApi(
        {
            "instance-replicas/127.0.0.1/22306": (200, [replica(22307), two, three]),
            "cluster-osc-replicas/sb": (200, [replica(22307), two]),
            "masters": (200, [dict(sample("master"), DataCenter="east")]),
            "instance/127.0.0.1/22307": (200, replica(22307, GtidErrant="0-2-9")),
            "instance/127.0.0.1/22308": (200, two),
            "instance/127.0.0.1/22309": (200, three),
            "cluster-info/sb": (200, dict(sample("cluster-info"), ClusterDomain="sb.example")),
            "downtimed/": (200, [replica(22309)]),
            "downtimed/sb": (200, []),
            "search?s=22308": (200, sample("search")),
            "submit-masters-to-kv-stores/sb": (
                200,
                {
                    "Code": "OK",
                    "Message": "Submitted 0 masters",
                    "Details": [{"Key": "mysql/master/sb", "Value": "127.0.0.1:22306"}],
                },
            ),
            "bulk-instances": (
                200,
                [{"Hostname": "b", "Port": 3306}, {"Hostname": "a", "Port": 7}],
            ),
            "bulk-promotion-rules": (
                200,
                [{"Hostname": "h", "Port": 2, "PromotionRule": "prefer"}],
            ),
            "automated-recovery-filters": (
                200,
                {"Code": "OK", "Details": {"RecoverMasterClusterFilters": ["*", "alias=x"]}},
            ),
            "replication-analysis-changelog": (
                200,
                [
                    {
                        "AnalyzedInstanceKey": KEY,
                        "Changelog": [
                            "2026-01-05 12:00:00;DeadMaster,",
                            "2026-01-05 12:01:00;NoProblem,",
                        ],
                    }
                ],
            ),
        }
    )
    i6, i7, i8, i9 = (["-i", f"127.0.0.1:{p}"] for p in (22306, 22307, 22308, 22309))
    expected = [
        (["-c", "which-broken-replicas", *i6], "127.0.0.1:22308\n"),
        (
            ["-c", "which-cluster-osc-replicas", "-alias", "sb"],
            "127.0.0.1:22307\n127.0.0.1:22308\n",
        ),
        (["-c", "which-cluster-osc-running-replicas", "-alias", "sb"], "127.0.0.1:22307\n"),
        (["-c", "dominant-dc"], "east\n"),
        (["-c", "which-gtid-errant", *i7], "0-2-9\n"),
        (["-c", "is-replicating", *i7], "127.0.0.1:22307\n"),
        (["-c", "is-replicating", *i9], ""),
        (["-c", "is-replication-stopped", *i9], "127.0.0.1:22309\n"),
        (["-c", "is-replication-stopped", *i8], ""),  # one thread still runs
        (["-c", "which-cluster-domain", "-alias", "sb"], "sb.example\n"),
        (["-c", "which-downtimed-instances"], "127.0.0.1:22309\n"),
        (["-c", "downtimed"], "127.0.0.1:22309\n"),
        (["-c", "downtimed", "-alias", "sb"], ""),
        (["-c", "search", "-i", "22308"], "127.0.0.1:22308\n"),
        (
            ["-c", "submit-masters-to-kv-stores", "-alias", "sb"],
            "mysql/master/sb:127.0.0.1:22306\n",
        ),
        (
            ["-c", "instance-status", *i7],
            "[0s,ok,10.11.19-MariaDB-0+deb12u1-log,ro,ROW,>>,GTID:errant]\n",
        ),
        (["-c", "bulk-instances"], "a:7\nb:3306\n"),
        (["-c", "bulk-promotion-rules"], "h:2 prefer\n"),
        (["-c", "automated-recovery-filters"], "RecoverMasterClusterFilters\t*,alias=x\n"),
        (
            ["-c", "replication-analysis-changelog"],
            "127.0.0.1:22307\t2026-01-05 12:00:00;DeadMaster,\n"
            "127.0.0.1:22307\t2026-01-05 12:01:00;NoProblem,\n",
        ),
    ]
    for argv, out in expected:
        assert run(argv, api) == (0, out), argv
    assert paths(api) == [
        "instance-replicas/127.0.0.1/22306",
        "cluster-osc-replicas/sb",
        "cluster-osc-replicas/sb",
        "masters",
        "instance/127.0.0.1/22307",
        "instance/127.0.0.1/22307",
        "instance/127.0.0.1/22309",
        "instance/127.0.0.1/22309",
        "instance/127.0.0.1/22308",
        "cluster-info/sb",
        "downtimed/",
        "downtimed/",
        "downtimed/sb",
        "search?s=22308",
        "submit-masters-to-kv-stores/sb",
        "instance/127.0.0.1/22307",
        "bulk-instances",
        "bulk-promotion-rules",
        "automated-recovery-filters",
        "replication-analysis-changelog",
    ]
    assert all(request.method == "GET" for request in api.requests)


def test_changes_and_raft_commands() -> None:
    status = copy.deepcopy(sample("health"))
    status["Details"].update(Hostname="worker-host", RaftLeader="w-1@worker-host")
    api = FakeApi(
        {
            "async-discover/127.0.0.1/22307": (
                200,
                {
                    "Code": "OK",
                    "Message": "Asynchronous discovery initiated",
                    "Details": {"Key": KEY},
                },
            ),
            "forget-cluster/sb": (
                200,
                {"Code": "OK", "Message": "Cluster forgotten", "Details": None},
            ),
            "snapshot-topologies": (200, {"Code": "OK", "Details": "Took 1.2ms"}),
            "set-cluster-alias/127.0.0.1:22306?alias=bars": (
                200,
                {"Code": "OK", "Message": "Cluster 127.0.0.1:22306 now has alias 'bars'"},
            ),
            "raft-leader": (200, "w-1@worker-host"),
            "raft-health": (200, "healthy"),
            "status": (200, status),
            "begin-downtime/127.0.0.1/22307/ops/disk": (200, sample("begin-downtime")),
            "begin-downtime/127.0.0.1/22307/ops/disk/1h": (200, sample("begin-downtime")),
            "begin-maintenance/127.0.0.1/22307/ops/disk": (200, sample("begin-downtime")),
            "tagged/?tag=role": (200, [KEY]),
            "move-gtid/127.0.0.1/22307/127.0.0.1/22308": (200, sample("move-below")),
        }
    )
    i7 = ["-i", "127.0.0.1:22307"]
    for argv, out in [
        (["-c", "async-discover", *i7], "127.0.0.1:22307\n"),
        (["-c", "forget-cluster", "-alias", "sb"], ""),
        (["-c", "snapshot-topologies"], "Took 1.2ms\n"),
        (
            ["-c", "set-cluster-alias", "-i", "127.0.0.1:22306", "-alias", "bars"],
            "Cluster 127.0.0.1:22306 now has alias 'bars'\n",
        ),
        (["-c", "raft-leader"], "w-1@worker-host\n"),
        (["-c", "raft-health"], "healthy\n"),
        (["-c", "raft-leader-hostname"], "worker-host\n"),
        (["-c", "begin-downtime", *i7, "--owner", "ops", "--reason", "disk"], "127.0.0.1:22307\n"),
        (
            ["-c", "begin-downtime", *i7, "--owner", "ops", "--reason", "disk", "--duration", "1h"],
            "127.0.0.1:22307\n",
        ),
        (
            ["-c", "begin-maintenance", *i7, "--owner", "ops", "--reason", "disk"],
            "127.0.0.1:22307\n",
        ),
        (["-c", "tagged", "--tag", "role"], "127.0.0.1:22307\n"),
    ]:
        assert run(argv, api) == (0, out), argv
    methods = [(r.method, r.url.path.removeprefix("/api/")) for r in api.requests]
    assert methods[:4] == [
        ("POST", "async-discover/127.0.0.1/22307"),
        ("POST", "forget-cluster/sb"),
        ("POST", "snapshot-topologies"),
        ("POST", "set-cluster-alias/127.0.0.1:22306"),
    ]
    assert [m for m, _ in methods[4:7]] == ["GET", "GET", "GET"]
    code, out = run(["-c", "move-gtid", *i7, "-d", "127.0.0.1:22308"], api)
    assert (code, out) == (0, "127.0.0.1:22309<127.0.0.1:22308\n")
    assert api.requests[-1].url.path == "/api/move-gtid/127.0.0.1/22307/127.0.0.1/22308"


def test_raft_leader_hostname_fails_while_none_leads(capsys: pytest.CaptureFixture[str]) -> None:
    status = copy.deepcopy(sample("health"))
    status["Details"].update(Hostname="api-host", RaftLeader="")
    api = FakeApi({"status": (200, status)})
    assert run(["-c", "raft-leader-hostname"], api) == (1, "")
    assert "Cannot determine raft state" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "search"], "search needs -i TEXT"),
        (["-c", "set-cluster-alias", "-i", "h:1"], "set-cluster-alias needs -i host:port"),
        (["-c", "forget-cluster"], "forget-cluster needs -alias or -i host:port"),
        (["-c", "which-cluster-osc-replicas"], "needs -alias or -i host:port"),
        (["-c", "is-replicating"], "is-replicating needs -i host:port"),
    ],
)
def test_missing_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv, FakeApi({})) == (2, "")
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
