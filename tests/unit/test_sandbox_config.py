"""The sandbox's pure parts: options, node layout, my.cnf, setup SQL, the status tree, the CLI's
argument checking."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from orchestrator_cli.main import main
from orchestrator_cli.sandbox.config import (
    TOPOLOGY_PRIVILEGES,
    SandboxOptions,
    change_master_sql,
    master_setup_sql,
    node_layouts,
    render_my_cnf,
    socket_dir,
)
from orchestrator_cli.sandbox.status import NodeReport, describe, render_tree
from orchestrator_shared.errors import SandboxError

pytestmark = pytest.mark.unit

DIRECTORY = Path("/home/someone/work/orchestrator/.sandbox")


# --- options and layout -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "base_port", "message"),
    [
        (0, 22306, "nodes must be at least 1, got 0"),
        (-3, 22306, "nodes must be at least 1"),
        (4, 0, "base port must be in 1..65535, got 0"),
        (4, 65536, "base port must be in 1..65535"),
        (4, 65533, "4 nodes from base port 65533 would need port 65536 > 65535"),
    ],
)
def test_bad_options_are_refused(nodes: int, base_port: int, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        SandboxOptions(nodes=nodes, base_port=base_port)


def test_the_last_port_may_be_65535() -> None:
    assert SandboxOptions(nodes=2, base_port=65534).nodes == 2


def test_star_replicas_replicate_from_node_0_and_a_chain_from_the_previous_node() -> None:
    star = SandboxOptions(nodes=4, base_port=22306)
    chain = SandboxOptions(nodes=4, base_port=22306, chain=True)
    assert [star.source_index(i) for i in range(4)] == [None, 0, 0, 0]
    assert [chain.source_index(i) for i in range(4)] == [None, 0, 1, 2]


def test_layout_ports_server_ids_and_files() -> None:
    layouts = node_layouts(DIRECTORY, SandboxOptions(nodes=3, base_port=22306))
    assert [layout.port for layout in layouts] == [22306, 22307, 22308]
    assert [layout.server_id for layout in layouts] == [1, 2, 3]
    assert [layout.key for layout in layouts] == [
        "127.0.0.1:22306",
        "127.0.0.1:22307",
        "127.0.0.1:22308",
    ]
    assert layouts[1].datadir == DIRECTORY / "node1" / "data"
    assert layouts[1].config_file == DIRECTORY / "node1" / "my.cnf"
    assert layouts[1].error_log == DIRECTORY / "node1" / "error.log"
    assert layouts[1].socket == socket_dir(DIRECTORY) / "node1.sock"


def test_sockets_stay_short_and_per_sandbox_even_under_long_directories() -> None:
    deep = Path("/tmp/pytest-of-someone/pytest-1234") / ("very-long-test-name-" * 8) / "sandbox"
    layouts = node_layouts(deep, SandboxOptions(nodes=12, base_port=22306))
    assert all(len(str(layout.socket)) < 100 for layout in layouts)
    assert str(socket_dir(deep)).startswith("/tmp/orch-sbx-")
    assert socket_dir(deep) == socket_dir(Path(str(deep)))
    assert socket_dir(deep) != socket_dir(DIRECTORY)


# --- my.cnf and SQL -------------------------------------------------------------------------------


def parse_cnf(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
    parser.read_string(text)
    return parser


def test_my_cnf_of_the_master_and_of_a_replica() -> None:
    options = SandboxOptions(nodes=2, base_port=22306)
    master, replica = node_layouts(DIRECTORY, options)
    cnf = parse_cnf(render_my_cnf(master, options, run_as_root=True))["mariadbd"]
    assert cnf["port"] == "22306"
    assert cnf["server-id"] == "1"
    assert cnf["report-host"] == "127.0.0.1"
    assert cnf["report-port"] == "22306"
    assert cnf["bind-address"] == "127.0.0.1"
    assert cnf["binlog-format"] == "ROW"
    assert cnf["log-slave-updates"] == "ON"
    assert cnf["gtid-strict-mode"] == "ON"
    assert cnf["read-only"] == "OFF"
    assert cnf["performance-schema"] == "OFF"
    assert cnf["datadir"] == str(master.datadir)
    assert cnf["socket"] == str(master.socket)
    assert cnf["user"] == "root"
    assert "skip-name-resolve" in cnf
    assert "log-bin" in cnf
    assert not any(key.startswith("rpl-semi-sync") for key in cnf)

    replica_cnf = parse_cnf(render_my_cnf(replica, options, run_as_root=False))
    assert replica_cnf["mariadbd"]["read-only"] == "ON"
    assert replica_cnf["mariadbd"]["report-port"] == "22307"
    assert "user" not in replica_cnf["mariadbd"]
    assert replica_cnf["client"]["socket"] == str(replica.socket)


def test_semi_sync_is_enabled_both_ways_on_every_node() -> None:
    options = SandboxOptions(nodes=2, base_port=22306, semi_sync=True)
    for layout in node_layouts(DIRECTORY, options):
        cnf = parse_cnf(render_my_cnf(layout, options))["mariadbd"]
        assert cnf["rpl-semi-sync-master-enabled"] == "ON"
        assert cnf["rpl-semi-sync-slave-enabled"] == "ON"
        assert int(cnf["rpl-semi-sync-master-timeout"]) <= 2000


def test_change_master_uses_gtid_and_retries_fast() -> None:
    sql = change_master_sql(22306)
    assert "master_host='127.0.0.1'" in sql
    assert "master_port=22306" in sql
    assert "master_user='repl', master_password='repl_pass'" in sql
    assert "master_use_gtid=slave_pos" in sql
    assert "master_connect_retry=1" in sql
    assert "master_heartbeat_period=" in sql


def test_server_defaults_keep_mariadbs_own_replication_timeouts() -> None:
    options = SandboxOptions(nodes=2, base_port=22306, server_defaults=True)
    for layout in node_layouts(DIRECTORY, options):
        assert "slave-net-timeout" not in parse_cnf(render_my_cnf(layout, options))["mariadbd"]
    assert "heartbeat" not in change_master_sql(22306, server_defaults=True)
    short = SandboxOptions(nodes=2, base_port=22306)
    [_, replica] = node_layouts(DIRECTORY, short)
    assert "slave-net-timeout" in parse_cnf(render_my_cnf(replica, short))["mariadbd"]


def test_master_setup_creates_the_users_first_and_grants_what_a_topology_manager_needs() -> None:
    statements = master_setup_sql()
    users = [i for i, sql in enumerate(statements) if sql.startswith(("CREATE USER", "GRANT"))]
    assert users == [0, 1, 2, 3]
    assert "'orchestrator'@'%' IDENTIFIED BY 'orch_topology'" in statements[0]
    assert "'repl'@'%' IDENTIFIED BY 'repl_pass'" in statements[2]
    for privilege in ("SUPER", "REPLICATION SLAVE ADMIN", "REPLICA MONITOR", "READ_ONLY ADMIN"):
        assert privilege in TOPOLOGY_PRIVILEGES
        assert privilege in statements[1]
    assert any(sql.startswith("CREATE TABLE sandbox.t") for sql in statements)


# --- the status tree ------------------------------------------------------------------------------


def master(port: int = 22306, **fields: object) -> NodeReport:
    defaults: dict[str, object] = {"gtid_binlog_pos": "0-1-12"}
    return NodeReport(
        index=port - 22306, port=port, configured_source_port=None, **defaults | fields
    )


def replica(port: int, source: int = 22306, **fields: object) -> NodeReport:
    defaults: dict[str, object] = {
        "read_only": True,
        "gtid_binlog_pos": "0-1-12",
        "source_host": "127.0.0.1",
        "source_port": source,
        "io_running": "Yes",
        "sql_running": "Yes",
        "lag": 0,
    }
    return NodeReport(
        index=port - 22306, port=port, configured_source_port=source, **defaults | fields
    )


def test_a_star() -> None:
    tree = render_tree([master(), replica(22307), replica(22308)])
    assert tree.splitlines() == [
        "127.0.0.1:22306 [master, rw, GTID 0-1-12]",
        "+ 127.0.0.1:22307 [replica, ro, IO:Yes SQL:Yes, lag 0, GTID 0-1-12]",
        "+ 127.0.0.1:22308 [replica, ro, IO:Yes SQL:Yes, lag 0, GTID 0-1-12]",
    ]


def test_a_chain_is_indented() -> None:
    tree = render_tree([replica(22308, source=22307), master(), replica(22307)])
    assert [line.split(" [")[0] for line in tree.splitlines()] == [
        "127.0.0.1:22306",
        "+ 127.0.0.1:22307",
        "  + 127.0.0.1:22308",
    ]


def test_unreachable_nodes_keep_their_place() -> None:
    dead_master = NodeReport(
        index=0, port=22306, configured_source_port=None, problem="not running"
    )
    hung_replica = NodeReport(
        index=2, port=22308, configured_source_port=22306, problem="hung (SIGSTOP)"
    )
    broken = replica(22307, io_running="Connecting", lag=None, replication_error="can't connect")
    assert render_tree([dead_master, broken, hung_replica]).splitlines() == [
        "127.0.0.1:22306 [unreachable: not running]",
        "+ 127.0.0.1:22307 [replica, ro, IO:Connecting SQL:Yes, lag ?, GTID 0-1-12, "
        "error: can't connect]",
        "+ 127.0.0.1:22308 [unreachable: hung (SIGSTOP)]",
    ]


def test_a_replica_moved_by_someone_else_is_drawn_where_it_replicates_from() -> None:
    tree = render_tree([master(), replica(22307), replica(22308, source=22307)])
    assert tree.splitlines()[2].startswith("  + 127.0.0.1:22308 [replica")
    outside = replica(22309, source=3306, source_host="10.0.0.9")
    assert describe(outside).startswith("127.0.0.1:22309 [replica of 10.0.0.9:3306, ro")
    assert render_tree([master(), outside]).splitlines()[1].startswith("127.0.0.1:22309")


def test_co_masters_are_both_roots() -> None:
    a = replica(22306, source=22307, read_only=False)
    b = replica(22307, source=22306)
    c = replica(22308, source=22307)
    lines = render_tree([a, b, c]).splitlines()
    assert [line.split(" [")[0] for line in lines] == [
        "127.0.0.1:22306",
        "127.0.0.1:22307",
        "+ 127.0.0.1:22308",
    ]


def test_long_errors_are_cut_and_semi_sync_is_shown_where_it_acts() -> None:
    report = replica(22307, sql_running="No", replication_error="x" * 500)
    assert describe(report).endswith("x" * 117 + "...]")
    semi = master(semi_sync_status="ON", semi_sync_clients=3)
    assert describe(semi) == "127.0.0.1:22306 [master, rw, GTID 0-1-12, semi-sync ON, clients 3]"
    assert "semi-sync" not in describe(replica(22307, semi_sync_status="ON"))


# --- command line arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "orchestrator: error: the following arguments are required: COMMAND"),
        (["sandbox"], "orchestrator sandbox: error: the following arguments are required"),
        (["sandbox", "up", "--nodes", "0"], "argument --nodes: must be at least 1, got 0"),
        (["sandbox", "up", "--nodes", "four"], "argument --nodes: not a number: 'four'"),
        (["sandbox", "up", "--base-port", "0"], "argument --base-port: must be in 1..65535"),
        (["sandbox", "up", "--base-port", "x"], "argument --base-port: not a port number"),
        (["sandbox", "up", "--chain=yes"], "ignored explicit argument 'yes'"),
        (["sandbox", "restart"], "invalid choice: 'restart'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "up", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--dir", "--nodes", "--base-port", "--chain", "--semi-sync", "--ssl-ca"):
        assert option in out
