"""``orchestrator up``: the README's run command, end to end (sandbox, nats-server, discovery)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.harness.ports import is_port_free

pytestmark = pytest.mark.integration


def free_base_port(nodes: int) -> int:
    for _ in range(20):
        base = random.randrange(61000, 65000 - nodes)
        if all(is_port_free(base + offset) for offset in range(nodes)):
            return base
    raise RuntimeError("no free port range")


def orchestrator(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_api.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mariadbd_pids_under(directory: Path) -> list[int]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "mariadbd" and str(directory) in cmdline:
            found.append(process.pid)
    return found


def test_up_once_shows_the_sandbox_discovered_from_one_seed(tmp_path: Path) -> None:
    base = free_base_port(4)
    directory = tmp_path / "sb"
    result = orchestrator(
        "up", "--sandbox", str(directory), "--base-port", str(base), "--once", "--timeout", "30"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("orchestrator-discovery started") for line in lines)
    assert f"seeds: 127.0.0.1:{base}" in result.stdout
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
    assert "Traceback" not in result.stderr


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


def test_a_killed_up_leaves_no_process_behind(tmp_path: Path) -> None:
    base = free_base_port(3)
    directory = (tmp_path / "sb").resolve()
    argv = ["up", "--sandbox", str(directory), "--nodes", "3", "--base-port", str(base)]
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_api.cli.main", *argv],
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
        names = sorted({child.name() for child in children})
        assert "mariadbd" in names
        assert "nats-server" in names
        process.kill()  # no chance to clean up: the kernel must take the children along
        process.wait(10)
        _, alive = psutil.wait_procs(children, timeout=10)
        assert alive == []
        assert mariadbd_pids_under(directory) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
