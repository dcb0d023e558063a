"""The MariaDB sandbox against real ``mariadbd``: what ``up`` builds, the node controls, ``down``
and the ``orchestrator sandbox`` command.

Ports come from 61000-64999: above Linux's ephemeral range and outside the harness's range, so
neither outgoing connections nor other fixtures take a node's port while it is down. Every
sandbox is downed by its fixture (or the test's ``finally``), even when the test fails, and
its nodes get ``parent_death_signal`` so that a killed pytest leaves no ``mariadbd`` behind.
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pymysql
import pytest

from orchestrator_cli.sandbox import Sandbox, template
from orchestrator_cli.sandbox.config import socket_dir
from orchestrator_shared.errors import SandboxError
from tests.harness.cli import run_orchestrator as orchestrator

pytestmark = pytest.mark.integration

PORT_RANGE = range(61000, 65000)
T = TypeVar("T")

_handed_out: set[int] = set()


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(count: int) -> int:
    """The first of ``count`` consecutive free ports, not handed out before in this session."""
    for _ in range(200):
        base = random.randrange(PORT_RANGE.start, PORT_RANGE.stop - count)
        ports = range(base, base + count)
        if any(port in _handed_out for port in ports) or not all(map(_is_free, ports)):
            continue
        _handed_out.update(ports)
        return base
    raise RuntimeError(f"no {count} consecutive free ports in {PORT_RANGE}")


def eventually(check: Callable[[], T | None], *, within: float = 15.0, what: str = "") -> T:
    """Poll ``check`` until it returns something other than None/False."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within:g}s: {what or check}")
        time.sleep(0.05)


def connect(sandbox: Sandbox, index: int, *, user: str = "root", **extra: Any) -> Any:
    """An autocommit PyMySQL connection over TCP, as ``user``, from ``connect_args``."""
    return pymysql.connect(**sandbox.connect_args(index, user=user), autocommit=True, **extra)


def slave_status(sandbox: Sandbox, index: int) -> dict[str, Any]:
    dicts = pymysql.cursors.DictCursor
    with connect(sandbox, index, cursorclass=dicts) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        row: dict[str, Any] | None = cursor.fetchone()
    assert row is not None, f"node {index} has no replication"
    return row


def value(sandbox: Sandbox, index: int, sql: str) -> Any:
    return sandbox.execute(index, sql)[0][0]


def notes(sandbox: Sandbox, index: int) -> set[str]:
    return {row[0] for row in sandbox.execute(index, "SELECT note FROM sandbox.t")}


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Sandboxes of the test's own; all downed afterwards."""
    made: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        nodes = options.setdefault("nodes", 3)
        directory = tmp_path / f"sandbox{len(made)}"
        sandbox = Sandbox.up(
            directory, base_port=free_base_port(nodes), parent_death_signal=True, **options
        )
        made.append(sandbox)
        return sandbox

    try:
        yield make
    finally:
        for sandbox in made:
            sandbox.down()


@pytest.fixture(scope="module")
def star(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A 4-node star shared by the tests that leave it as they found it."""
    sandbox = Sandbox.up(
        tmp_path_factory.mktemp("star"),
        nodes=4,
        base_port=free_base_port(4),
        parent_death_signal=True,
    )
    try:
        yield sandbox
    finally:
        sandbox.down()


@pytest.fixture(scope="module")
def faults_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sandbox = Sandbox.up(
        tmp_path_factory.mktemp("faults"),
        nodes=3,
        base_port=free_base_port(3),
        parent_death_signal=True,
    )
    try:
        yield sandbox
    finally:
        sandbox.down()


@pytest.fixture
def faults(faults_sandbox: Sandbox) -> Iterator[Sandbox]:
    """A 3-node star the test may break; healed (every node up, caught up) afterwards."""
    try:
        yield faults_sandbox
    finally:
        for node in faults_sandbox.nodes:
            if node.pid is None:
                faults_sandbox.start(node.index)
            else:
                faults_sandbox.resume(node.index)
        faults_sandbox.wait_caught_up()


# --- what up builds ---------------------------------------------------------------------------


def test_star_nodes_are_laid_out_as_documented(star: Sandbox) -> None:
    base = star.master.port
    assert [node.port for node in star.nodes] == [base, base + 1, base + 2, base + 3]
    assert [node.key for node in star.nodes] == [f"127.0.0.1:{base + i}" for i in range(4)]
    assert [node.server_id for node in star.nodes] == [1, 2, 3, 4]
    assert all(node.pid is not None for node in star.nodes)
    for node in star.nodes:
        assert value(star, node.index, "SELECT @@server_id") == node.server_id
        assert value(star, node.index, "SELECT @@port") == node.port
        assert value(star, node.index, "SELECT @@report_port") == node.port
        assert value(star, node.index, "SELECT @@report_host") == "127.0.0.1"
        assert value(star, node.index, "SELECT @@binlog_format") == "ROW"
        assert value(star, node.index, "SELECT @@log_slave_updates") == 1
        assert value(star, node.index, "SELECT @@gtid_strict_mode") == 1
        assert value(star, node.index, "SELECT @@read_only") == (0 if node.index == 0 else 1)
        assert len(str(node.socket)) < 100


def test_star_replicas_replicate_from_the_master_with_gtid(star: Sandbox) -> None:
    for index in (1, 2, 3):
        row = slave_status(star, index)
        assert row["Master_Host"] == "127.0.0.1"
        assert row["Master_Port"] == star.master.port
        assert row["Master_User"] == "repl"
        assert row["Using_Gtid"] == "Slave_Pos"
        assert (row["Slave_IO_Running"], row["Slave_SQL_Running"]) == ("Yes", "Yes")
    hosts = star.execute(0, "SHOW SLAVE HOSTS")
    assert sorted(row[2] for row in hosts) == [node.port for node in star.nodes[1:]]


def test_a_write_on_the_master_reaches_every_replica(star: Sandbox) -> None:
    note = f"write {time.time_ns()}"
    star.execute(0, f"INSERT INTO sandbox.t (note) VALUES ('{note}')")
    star.wait_caught_up(timeout=10)
    master_gtid = value(star, 0, "SELECT @@gtid_binlog_pos")
    for index in (1, 2, 3):
        assert note in notes(star, index)
        assert value(star, index, "SELECT @@gtid_slave_pos") == master_gtid


def test_users_can_do_their_jobs(star: Sandbox) -> None:
    assert star.connect_args(1, user="orchestrator")["password"] == "orch_topology"
    with connect(star, 1, user="orchestrator") as topology, topology.cursor() as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        assert cursor.fetchone() is not None
        for statement in (
            "SHOW MASTER STATUS",
            "SHOW BINARY LOGS",
            "SHOW FULL PROCESSLIST",
            "SELECT COUNT(*) FROM mysql.user",
            "SELECT @@gtid_current_pos",
            "STOP SLAVE",
            "START SLAVE",
            "SET GLOBAL read_only = ON",
            "FLUSH BINARY LOGS",
        ):
            cursor.execute(statement)
    with connect(star, 0, user="orchestrator") as topology, topology.cursor() as cursor:
        cursor.execute("SHOW SLAVE HOSTS")
        assert len(cursor.fetchall()) == 3
    with connect(star, 0, user="repl") as repl, repl.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone() == ("repl@%",)
    with connect(star, 2) as root, root.cursor() as cursor:
        cursor.execute("SELECT CURRENT_USER()")
        assert cursor.fetchone() == ("root@127.0.0.1",)
    star.wait_caught_up(timeout=10)
    with pytest.raises(SandboxError, match="unknown sandbox user"):
        star.connect_args(0, user="nobody")


def test_status_draws_the_star(star: Sandbox) -> None:
    lines = star.status().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{star.master.key} [master, rw, GTID 0-1-")
    for line, node in zip(lines[1:], star.nodes[1:], strict=True):
        assert line.startswith(f"+ {node.key} [replica, ro, IO:Yes SQL:Yes, lag 0, GTID 0-1-")


def test_load_sees_the_same_sandbox(star: Sandbox) -> None:
    loaded = Sandbox.load(star.directory)
    assert loaded.nodes == star.nodes
    assert loaded.options == star.options
    assert loaded.status() == star.status()


def test_up_refuses_a_running_sandbox_and_a_used_port(star: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="already holds a running sandbox"):
        Sandbox.up(star.directory, nodes=2, base_port=free_base_port(2))
    with pytest.raises(SandboxError, match=rf"port {star.nodes[2].port} \(node 0\) is already"):
        Sandbox.up(tmp_path / "other", nodes=2, base_port=star.nodes[2].port)
    assert not (tmp_path / "other").exists()


def test_hang_and_resume_a_replica(star: Sandbox) -> None:
    try:
        star.hang(3)
        assert psutil.Process(star.nodes[3].pid).status() == psutil.STATUS_STOPPED
        assert (
            star.status().splitlines()[3] == f"+ {star.nodes[3].key} [unreachable: hung (SIGSTOP)]"
        )
        star.execute(0, "INSERT INTO sandbox.t (note) VALUES ('while 3 hangs')")
    finally:
        star.resume(3)
    star.wait_caught_up(timeout=15)
    assert "while 3 hangs" in notes(star, 3)


# --- other shapes -----------------------------------------------------------------------------


def test_chain_replicates_down_the_line(make_sandbox: Callable[..., Sandbox]) -> None:
    chain = make_sandbox(nodes=3, chain=True)
    ports = [node.port for node in chain.nodes]
    assert slave_status(chain, 1)["Master_Port"] == ports[0]
    assert slave_status(chain, 2)["Master_Port"] == ports[1]
    assert slave_status(chain, 2)["Using_Gtid"] == "Slave_Pos"
    chain.execute(0, "INSERT INTO sandbox.t (note) VALUES ('down the chain')")
    chain.wait_caught_up(timeout=10)
    assert "down the chain" in notes(chain, 2)
    lines = chain.status().splitlines()
    assert lines[0].startswith(f"{chain.nodes[0].key} [master")
    assert lines[1].startswith(f"+ {chain.nodes[1].key} [replica")
    assert lines[2].startswith(f"  + {chain.nodes[2].key} [replica")


def test_semi_sync_acknowledges_and_falls_back(make_sandbox: Callable[..., Sandbox]) -> None:
    semi = make_sandbox(nodes=3, semi_sync=True)

    def status_var(index: int, name: str) -> str:
        return str(semi.execute(index, f"SHOW GLOBAL STATUS LIKE '{name}'")[0][1])

    assert status_var(0, "Rpl_semi_sync_master_status") == "ON"
    assert status_var(0, "Rpl_semi_sync_master_clients") == "2"
    for index in (1, 2):
        assert status_var(index, "Rpl_semi_sync_slave_status") == "ON"
    acknowledged = int(status_var(0, "Rpl_semi_sync_master_yes_tx"))
    semi.execute(0, "INSERT INTO sandbox.t (note) VALUES ('acknowledged')")
    assert int(status_var(0, "Rpl_semi_sync_master_yes_tx")) == acknowledged + 1
    assert "semi-sync ON, clients 2" in semi.status().splitlines()[0]

    semi.hang(1)
    semi.hang(2)
    try:
        semi.execute(0, "INSERT INTO sandbox.t (note) VALUES ('unacknowledged')")
        assert status_var(0, "Rpl_semi_sync_master_status") == "OFF"
    finally:
        semi.resume(1)
        semi.resume(2)
    semi.wait_caught_up(timeout=15)


# --- breaking nodes ---------------------------------------------------------------------------


def test_killed_master_stops_the_replicas_io_and_comes_back(faults: Sandbox) -> None:
    old_pid = faults.master.pid
    faults.kill(0)
    assert old_pid is not None and is_gone(old_pid)
    assert faults.master.pid is None
    for index in (1, 2):
        eventually(
            lambda index=index: slave_status(faults, index)["Slave_IO_Running"] != "Yes",
            within=5,
            what=f"node {index} notices the dead master",
        )
    lines = faults.status().splitlines()
    assert lines[0] == f"{faults.master.key} [unreachable: not running]"
    assert "IO:Connecting" in lines[1]

    faults.start(0)
    assert faults.master.pid not in (None, old_pid)
    faults.execute(0, "INSERT INTO sandbox.t (note) VALUES ('after the master came back')")
    faults.wait_caught_up(timeout=15)
    assert "after the master came back" in notes(faults, 2)


def test_hung_master_is_noticed_after_slave_net_timeout(faults: Sandbox) -> None:
    faults.hang(0)
    try:
        eventually(
            lambda: slave_status(faults, 1)["Slave_IO_Running"] != "Yes",
            within=15,
            what="replica notices the hung master",
        )
        assert faults.status().splitlines()[0].endswith("[unreachable: hung (SIGSTOP)]")
    finally:
        faults.resume(0)
    eventually(lambda: slave_status(faults, 1)["Slave_IO_Running"] == "Yes", within=15)


def test_stopped_replica_rejoins_and_catches_up(faults: Sandbox) -> None:
    faults.stop(2)
    assert faults.nodes[2].pid is None
    assert not faults.nodes[2].socket.exists()  # a graceful shutdown removes it
    faults.execute(0, "INSERT INTO sandbox.t (note) VALUES ('while 2 was down')")
    with pytest.raises(SandboxError, match="not running"):
        faults.hang(2)
    faults.start(2)
    with pytest.raises(SandboxError, match="already running"):
        faults.start(2)
    faults.wait_caught_up(timeout=15)
    assert "while 2 was down" in notes(faults, 2)
    assert slave_status(faults, 2)["Using_Gtid"] == "Slave_Pos"


def test_a_node_that_fails_to_start_says_why(faults: Sandbox) -> None:
    config = faults.nodes[1].config_file
    original = config.read_text()
    faults.stop(1)
    try:
        config.write_text(original.replace("[mariadbd]\n", "[mariadbd]\nno-such-option=1\n"))
        with pytest.raises(SandboxError, match=r"node 1 .* failed to start.*no-such-option"):
            faults.start(1)
        assert faults.nodes[1].pid is None
    finally:
        config.write_text(original)


# --- down ---------------------------------------------------------------------------------------


def test_down_leaves_no_process_even_with_hung_and_dead_nodes(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = make_sandbox(nodes=3)
    pids = [node.pid for node in sandbox.nodes]
    assert all(pid is not None for pid in pids)
    sandbox.hang(1)
    sandbox.kill(2)
    Sandbox.load(sandbox.directory).down()  # from "another process": no Popen to reap with
    sandbox.down()  # reaps its children; idempotent
    sandbox.down()
    assert all(is_gone(pid) for pid in pids if pid is not None)
    assert all(node.pid is None for node in sandbox.nodes)
    assert not socket_dir(sandbox.directory).exists()
    lines = Sandbox.load(sandbox.directory).status().splitlines()
    assert all(line.endswith("[unreachable: not running]") for line in lines)


def test_up_again_in_a_downed_directory_builds_afresh(tmp_path: Path) -> None:
    first = Sandbox.up(tmp_path, nodes=1, base_port=free_base_port(1), parent_death_signal=True)
    try:
        first.execute(0, "INSERT INTO sandbox.t (note) VALUES ('old')")
    finally:
        first.down()
    again = Sandbox.up(tmp_path, nodes=2, base_port=free_base_port(2), parent_death_signal=True)
    try:
        assert notes(again, 0) == notes(again, 1) == {"sandbox created"}
        assert again.status().count("IO:Yes SQL:Yes") == 1
    finally:
        again.down()


def test_nodes_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from orchestrator_cli.sandbox import Sandbox\n"
        "sandbox = Sandbox.up(Path(sys.argv[1]), nodes=2, base_port=int(sys.argv[2]),\n"
        "                     parent_death_signal=True)\n"
        "print(' '.join(str(node.pid) for node in sandbox.nodes), flush=True)\n"
        "time.sleep(300)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(free_base_port(2))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pids = [int(pid) for pid in owner.stdout.readline().split()]
        assert len(pids) == 2
        assert not any(is_gone(pid) for pid in pids)
        owner.kill()
        owner.wait()
        eventually(lambda: all(is_gone(pid) for pid in pids), within=10, what="orphans die")
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        if (tmp_path / "sandbox.json").exists():
            Sandbox.load(tmp_path).down()


def test_up_without_mariadbd_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(template, "_SEARCH_DIRS", ())
    with pytest.raises(SandboxError, match="mariadbd not found"):
        Sandbox.up(tmp_path / "sandbox", nodes=1, base_port=free_base_port(1))
    assert not (tmp_path / "sandbox").exists()


# --- the command line ---------------------------------------------------------------------------


def test_cli_up_status_down(tmp_path: Path) -> None:
    directory = tmp_path / "cli"
    base = free_base_port(2)
    try:
        up = orchestrator(
            "sandbox", "up", "--dir", str(directory), "--nodes", "2", "--base-port", str(base)
        )
        assert up.returncode == 0, up.stderr
        assert f"127.0.0.1:{base} [master, rw" in up.stdout
        assert f"+ 127.0.0.1:{base + 1} [replica, ro, IO:Yes SQL:Yes" in up.stdout
        pids = [node.pid for node in Sandbox.load(directory).nodes]
        assert all(pid is not None for pid in pids)  # the nodes outlived the command

        status = orchestrator("sandbox", "status", "--dir", str(directory))
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[1].startswith(f"+ 127.0.0.1:{base + 1} [replica")

        again = orchestrator("sandbox", "up", "--dir", str(directory), "--base-port", str(base))
        assert again.returncode == 1
        assert again.stderr.count("\n") == 1
        assert "already holds a running sandbox" in again.stderr

        down = orchestrator("sandbox", "down", "--dir", str(directory))
        assert down.returncode == 0, down.stderr
        assert all(is_gone(pid) for pid in pids if pid is not None)

        status = orchestrator("sandbox", "status", "--dir", str(directory))
        assert status.stdout.splitlines() == [
            f"127.0.0.1:{base} [unreachable: not running]",
            f"+ 127.0.0.1:{base + 1} [unreachable: not running]",
        ]
    finally:
        if (directory / "sandbox.json").exists():
            Sandbox.load(directory).down()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sandbox", "up", "--nodes", "0"], 2, "--nodes: must be at least 1"),
        (["sandbox", "up", "--base-port", "70000"], 2, "--base-port: must be in 1..65535"),
        (["sandbox", "up", "--base-port", "http"], 2, "--base-port: not a port number"),
        (["sandbox", "up", "--nodes", "4", "--base-port", "65533"], 1, "would need port 65536"),
        (["sandbox", "status", "--dir", "{missing}"], 1, "no sandbox in"),
        (["sandbox", "down", "--dir", "{missing}"], 1, "no sandbox in"),
        (["sandbox"], 2, "required"),
    ],
)
def test_cli_bad_input_is_one_line(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    result = orchestrator(*(arg.format(missing=tmp_path / "missing") for arg in args))
    assert result.returncode == code
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
