"""A Galera sandbox's pure parts: options and ports, each node's my.cnf, the status line and the
``--galera`` arguments."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from orchestrator_cli.main import main
from orchestrator_cli.sandbox.config import (
    GALERA_PROVIDER,
    GaleraPorts,
    SandboxOptions,
    node_layouts,
    render_my_cnf,
)
from orchestrator_cli.sandbox.galera import is_synced
from orchestrator_cli.sandbox.status import NodeReport, describe
from orchestrator_shared.errors import SandboxError

pytestmark = pytest.mark.unit

DIRECTORY = Path("/srv/sandbox")
GALERA = SandboxOptions(nodes=4, galera=3, base_port=22306)


def cnf_of(index: int, options: SandboxOptions = GALERA) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
    parser.read_string(render_my_cnf(node_layouts(DIRECTORY, options)[index], options))
    return parser


def test_galera_nodes_come_first_and_the_others_replicate_from_node_0() -> None:
    assert [GALERA.is_galera(index) for index in range(4)] == [True, True, True, False]
    assert [GALERA.source_index(index) for index in range(4)] == [None, None, None, 0]
    assert GALERA.replica_indexes == [3]
    assert SandboxOptions(nodes=4, base_port=22306).replica_indexes == [1, 2, 3]


def test_each_galera_node_has_three_ports_after_the_nodes_ports() -> None:
    assert GALERA.port_count == 4 + 3 * 3
    assert GALERA.galera_ports(0) == GaleraPorts(group=22310, ist=22311, sst=22312)
    assert GALERA.galera_ports(2) == GaleraPorts(group=22316, ist=22317, sst=22318)
    with pytest.raises(SandboxError, match="node 3 is not a Galera node"):
        GALERA.galera_ports(3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nodes": 2, "galera": 3}, "galera nodes must be in 0..2, got 3"),
        ({"nodes": 3, "galera": -1}, "galera nodes must be in 0..3"),
        ({"nodes": 3, "galera": 3, "chain": True}, "no chain or semi-sync"),
        ({"nodes": 3, "galera": 3, "semi_sync": True}, "no chain or semi-sync"),
        ({"nodes": 3, "galera": 3, "base_port": 65526}, "would need port 65537 > 65535"),
    ],
)
def test_bad_galera_options_are_refused(options: dict[str, int | bool], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        SandboxOptions(**{"base_port": 22306, **options})  # type: ignore[arg-type]


def test_a_galera_node_joins_the_others_on_loopback_with_gtid_in_one_domain() -> None:
    cnf = cnf_of(1)
    node = cnf["mariadbd"]
    assert node["wsrep-on"] == "ON"
    assert node["wsrep-provider"] == str(GALERA_PROVIDER)
    assert node["wsrep-cluster-address"] == (
        "gcomm://127.0.0.1:22310,127.0.0.1:22313,127.0.0.1:22316"
    )
    assert node["wsrep-node-address"] == "127.0.0.1:22313"
    assert node["wsrep-node-incoming-address"] == "127.0.0.1:22307"
    assert node["wsrep-provider-options"] == (
        '"gmcast.listen_addr=tcp://127.0.0.1:22313;ist.recv_addr=127.0.0.1:22314;gcache.size=16M"'
    )
    assert node["wsrep-sst-receive-address"] == "127.0.0.1:22315"
    assert node["wsrep-sst-method"] == "mariabackup"
    assert node["wsrep-gtid-mode"] == "ON"
    assert node["wsrep-gtid-domain-id"] == cnf_of(0)["mariadbd"]["wsrep-gtid-domain-id"] == "0"
    assert node["gtid-domain-id"] == "101"  # its own writes outside the cluster: its own domain
    assert node["innodb-autoinc-lock-mode"] == "2"
    assert node["binlog-format"] == "ROW"
    assert node["log-slave-updates"] == "ON"
    assert node["read-only"] == "OFF"
    assert cnf["sst"]["sst-log-archive"] == "0"


def test_the_async_replica_and_a_plain_sandbox_have_no_wsrep() -> None:
    replica = cnf_of(3)
    assert replica["mariadbd"]["read-only"] == "ON"
    plain = cnf_of(0, SandboxOptions(nodes=2, base_port=22306))
    for cnf in (replica, plain):
        assert not any(key.startswith("wsrep") for key in cnf["mariadbd"])
        assert not cnf.has_section("sst")


def test_synced_means_synced_ready_primary_and_the_right_size() -> None:
    state = {
        "wsrep_local_state_comment": "Synced",
        "wsrep_ready": "ON",
        "wsrep_cluster_status": "Primary",
        "wsrep_cluster_size": "3",
    }
    assert is_synced(state, 3)
    assert is_synced(state)
    assert not is_synced(state, 2)
    assert not is_synced(state | {"wsrep_local_state_comment": "Joiner"})
    assert not is_synced(state | {"wsrep_cluster_status": "non-Primary"})
    assert not is_synced(state | {"wsrep_ready": "OFF"})


def test_a_galera_node_is_described_with_its_state() -> None:
    report = NodeReport(
        index=0,
        port=22306,
        configured_source_port=None,
        gtid_binlog_pos="0-1-7",
        galera_state="Synced",
        galera_cluster="Primary of 3",
    )
    assert describe(report) == "127.0.0.1:22306 [galera, rw, Synced, Primary of 3, GTID 0-1-7]"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--galera", "0"], "argument --galera: must be at least 1, got 0"),
        (["--galera", "3", "--async-replicas", "-1"], "--async-replicas: must be at least 0"),
        (["--async-replicas", "1"], "--async-replicas goes with --galera"),
        (["--galera", "3", "--nodes", "4"], "--nodes and --galera do not go together"),
        (["--galera", "3", "--chain"], "a Galera sandbox has no chain or semi-sync option"),
    ],
)
def test_bad_galera_arguments_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["sandbox", "up", "--dir", str(tmp_path / "sbx"), *argv]) in (1, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "sbx").exists()
