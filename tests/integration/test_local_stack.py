"""``orchestrator up``: the README's run command, end to end (sandbox, nats-server, etcd,
discovery, topology-api), and that it leaves no process behind however it is stopped."""

from __future__ import annotations

import contextlib
import json
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import SandboxFactory
from tests.harness.ports import free_port, is_port_free, nobody_listens

pytestmark = pytest.mark.integration


def free_base_port(nodes: int) -> int:
    for _ in range(20):
        base = random.randrange(61000, 65000 - nodes)
        if all(is_port_free(base + offset) for offset in range(nodes)):
            return base
    raise RuntimeError("no free port range")


def orchestrator(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def api_config(directory: Path, port: int) -> Path:
    """A config file putting the API on ``port`` (not the default 3000, maybe taken here)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "orchestrator.conf.json"
    path.write_text(json.dumps({"ListenAddress": f"127.0.0.1:{port}"}))
    return path


def service_names(processes: list[psutil.Process]) -> set[str]:
    """``mariadbd``, ``nats-server``, ``etcd``, and the Python services by module name."""
    names = set()
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            cmdline = process.cmdline()
            module = cmdline[cmdline.index("-m") + 1] if "-m" in cmdline else None
            names.add(module or process.name())
    return names


def mariadbd_pids_under(directory: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "mariadbd" and str(directory) in cmdline:
            found.append(process.pid)
    return found


def test_up_once_shows_the_api_url_and_the_sandbox_discovered_from_one_seed(
    tmp_path: Path,
) -> None:
    base = free_base_port(4)
    port = free_port()
    directory = tmp_path / "sb"
    result = orchestrator(
        "up",
        "--config",
        str(api_config(tmp_path, port)),
        "--sandbox",
        str(directory),
        "--base-port",
        str(base),
        "--once",
        "--timeout",
        "30",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("orchestrator-discovery started") for line in lines)
    assert any(line.startswith("etcd on http://127.0.0.1:") for line in lines)
    assert f"seeds: 127.0.0.1:{base}" in result.stdout
    url = f"http://127.0.0.1:{port}"
    assert any(line.startswith(f"orchestrator-topology-api on {url} ") for line in lines)
    assert f"try: uv run orchestrator -c clusters --api {url}" in lines
    # the tree is printed each time it changes: the last one is the whole topology
    last_header = len(lines) - 1 - lines[::-1].index(f"cluster 127.0.0.1:{base}")
    tree = lines[last_header + 1 :]
    assert tree[0].startswith(f"127.0.0.1:{base}   [0s,ok,")
    assert ",rw,ROW,>>]" in tree[0]
    for offset, line in zip((1, 2, 3), tree[1:4], strict=True):
        assert line.startswith(f"+ 127.0.0.1:{base + offset} [0s,ok,")
        assert line.endswith(",ro,ROW,>>,GTID]")
    # it created the sandbox, so it stopped it again: nothing is left running
    assert mariadbd_pids_under(directory.resolve()) == []
    assert nobody_listens(port)
    assert "Traceback" not in result.stderr


def test_up_with_a_galera_sandbox_shows_its_nodes_and_replica(tmp_path: Path) -> None:
    """`./dev run --galera 3 --async-replicas 1` (docs/galera.md): the stack discovers the
    Galera nodes from node 0 alone (their wsrep_incoming_addresses) and the async replica."""
    nodes = 3 + 1
    base = free_base_port(nodes + 3 * 3)  # each Galera node takes 3 more ports after the nodes'
    port = free_port()
    directory = tmp_path / "sb"
    result = orchestrator(
        *("up", "--config", str(api_config(tmp_path, port)), "--sandbox", str(directory)),
        *("--base-port", str(base), "--galera", "3", "--async-replicas", "1"),
        *("--once", "--timeout", "60"),
        timeout=150,
    )
    assert result.returncode == 0, result.stderr
    assert "of a 3-node Galera cluster, 1 replica in" in result.stdout
    assert f"seeds: 127.0.0.1:{base}" in result.stdout
    for offset in range(nodes):  # every node through the API, found from the one seed
        assert f"127.0.0.1:{base + offset}" in result.stdout
    # one cluster: its three nodes marked as Galera peers at the top, the replica under node 0
    lines = result.stdout.splitlines()
    headers = [n for n, line in enumerate(lines) if line.startswith("cluster ")]
    assert lines[headers[-1]] == f"cluster 127.0.0.1:{base} (alias orchestrator-sandbox)"
    tree = [line for line in lines[headers[-1] + 1 :] if line.startswith(("127.", "+ ", "- "))]
    assert [line.split()[0] for line in tree] == [
        f"127.0.0.1:{base}",
        "+",
        f"127.0.0.1:{base + 1}",
        f"127.0.0.1:{base + 2}",
    ], tree
    assert [("galera:Synced" in line) for line in tree] == [True, False, True, True], tree
    assert mariadbd_pids_under(directory.resolve()) == []
    assert "Traceback" not in result.stderr


def test_up_with_sandbox_tls_discovers_the_sandbox_over_verified_tls(tmp_path: Path) -> None:
    """The sandbox's topology user requires TLS: discovering every node proves the stack
    connected over TLS, verifying the throwaway CA ``up`` made."""
    base = free_base_port(2)
    port = free_port()
    directory = tmp_path / "sb"
    result = orchestrator(
        "up", "--config", str(api_config(tmp_path, port)), "--sandbox", str(directory),
        "--nodes", "2", "--base-port", str(base), "--sandbox-tls", "--once", "--timeout", "30",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ca = directory / "tls" / "ca.pem"
    assert f"MariaDB sandbox in {directory} with TLS (throwaway CA {ca.absolute()}) ..." in (
        result.stdout
    )
    lines = result.stdout.splitlines()
    last_header = len(lines) - 1 - lines[::-1].index(f"cluster 127.0.0.1:{base}")
    tree = lines[last_header + 1 :]
    assert tree[0].startswith(f"127.0.0.1:{base}   [0s,ok,")
    assert tree[1].startswith(f"+ 127.0.0.1:{base + 1} [0s,ok,")
    # what discovery was given: TLS on, the sandbox's CA trusted
    config = json.loads((directory / "run" / "discovery.conf.json").read_text())
    assert config["MySQLTopologyUseMutualTLS"] is True
    assert config["MySQLTopologySSLCAFile"] == str(ca.resolve())
    assert mariadbd_pids_under(directory.resolve()) == []
    assert "Traceback" not in result.stderr


def test_sandbox_tls_refuses_a_running_sandbox_without_tls(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(nodes=1)
    config = str(api_config(tmp_path, free_port()))
    result = orchestrator("up", "--config", config, "--sandbox", str(sandbox.directory),
                          "--sandbox-tls")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"orchestrator: error: the sandbox running in {sandbox.directory} has no TLS: stop it "
        f"first (orchestrator sandbox down --dir {sandbox.directory}) or leave out --sandbox-tls\n"
    )
    assert sandbox.is_running(0)  # left alone
    assert not (sandbox.directory / "tls").exists()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_while_up_runs_the_cli_lists_the_sandbox_and_a_signal_stops_everything(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    base = free_base_port(3)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    directory = (tmp_path / "sb").resolve()
    argv = ["up", "--config", str(api_config(tmp_path, port)), "--sandbox", str(directory)]
    argv += ["--nodes", "3", "--base-port", str(base)]
    with (tmp_path / "up.out").open("w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator_cli.main", *argv],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                listed = orchestrator("-c", "clusters", "--api", url, timeout=10)
                if listed.returncode == 0 and listed.stdout.split() == [f"127.0.0.1:{base}"]:
                    break
                assert process.poll() is None, (tmp_path / "up.out").read_text()
                assert time.monotonic() < deadline, listed.stderr
                time.sleep(0.3)
            children = psutil.Process(process.pid).children(recursive=True)
            assert {
                "mariadbd",
                "nats-server",
                "etcd",
                "orchestrator_discovery.main",
                "orchestrator_api.main",
                "orchestrator_coordinator.main",
                "orchestrator_recovery.main",
            } <= service_names(children)
            # the API shows the recovery filters the workers run with (every cluster under up)
            info = httpx.get(f"{url}/api/clusters-info", timeout=10).json()
            assert [c["HasAutomatedMasterRecovery"] for c in info] == [True], info
            assert [c["HasAutomatedIntermediateMasterRecovery"] for c in info] == [True], info
            # a command reaches the leading worker: up gave the API and the workers one key
            while (
                checked := orchestrator("-c", "check-global-recoveries", "--api", url, timeout=30)
            ).returncode != 0:
                assert "not signed" not in checked.stderr, checked.stderr
                assert time.monotonic() < deadline, checked.stderr
                time.sleep(0.3)
            assert checked.stdout.strip() == "enabled", checked.stdout
            # the API may list the cluster a moment before `up` prints its last start-up line
            while "try: " not in (tmp_path / "up.out").read_text():
                assert time.monotonic() < deadline, (tmp_path / "up.out").read_text()
                time.sleep(0.1)
            process.send_signal(stop_signal)  # SIGINT: what Ctrl-C sends
            assert process.wait(60) == 0
            _, alive = psutil.wait_procs(children, timeout=10)
            assert alive == []
            assert mariadbd_pids_under(directory) == []
            assert nobody_listens(port)
            output.seek(0)
            text = output.read()
            assert "Traceback" not in text
            assert f"try: uv run orchestrator -c clusters --api {url}" in text
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_taken_api_port_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        directory = (tmp_path / "sb").resolve()
        result = orchestrator(
            "up",
            "--config",
            str(api_config(tmp_path, port)),
            "--sandbox",
            str(directory),
            "--base-port",
            str(free_base_port(4)),
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"orchestrator: error: port {port} is already in use (ListenAddress is "
        f"'127.0.0.1:{port}'): stop what listens there or set ListenAddress in --config FILE "
        "or ORCHESTRATOR_ListenAddress"
    ]
    assert not directory.exists()  # checked before anything started
    assert mariadbd_pids_under(directory) == []


def test_up_rejects_bad_input_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"InstancePollSeconds": "soon"}))
    result = orchestrator("up", "--config", str(config), "--sandbox", str(tmp_path / "sb"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator: bad configuration: InstancePollSeconds: Input should be a valid number, "
        "unable to parse string as a number, got 'soon'"
    ]
    result = orchestrator("up", "--once")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "orchestrator: --once needs --sandbox (it waits for the sandbox's instances)"
    )
    result = orchestrator("up", "--sandbox-tls")
    assert result.returncode == 2
    assert result.stderr == "orchestrator: --sandbox-tls needs --sandbox\n"


def test_a_killed_up_leaves_no_process_behind(tmp_path: Path) -> None:
    base = free_base_port(3)
    directory = (tmp_path / "sb").resolve()
    port = free_port()
    argv = ["up", "--config", str(api_config(tmp_path, port)), "--sandbox", str(directory)]
    argv += ["--nodes", "3", "--base-port", str(base)]
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "discovered topology" in line:
                break
        children = psutil.Process(process.pid).children(recursive=True)
        assert {
            "mariadbd",
            "nats-server",
            "etcd",
            "orchestrator_discovery.main",
            "orchestrator_api.main",
            "orchestrator_coordinator.main",
            "orchestrator_recovery.main",
        } <= service_names(children)
        process.kill()  # no chance to clean up: the kernel must take the children along
        process.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        assert mariadbd_pids_under(directory) == []
        assert nobody_listens(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
