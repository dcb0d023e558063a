"""A real ``orchestrator-topology-api`` process for the tests that break what is under it
(poison messages, store outages, consumer identity): launched with a config, fed snapshots
through JetStream, read through its HTTP API and /metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import nats

from orchestrator_shared.bus import Subjects
from tests.harness.ports import free_port
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import start
from tests.integration.test_store import snapshot

SUBJECTS = Subjects()


def launch_api(
    config: dict[str, Any], directory: Path, *, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m orchestrator_api.main`` with ``config`` (its ListenAddress set), up and
    healthy; the process and its URL. Stop it with ``test_stack.stop``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    process = start(
        "orchestrator_api.main", {**config, "ListenAddress": f"127.0.0.1:{port}"}, directory
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{url}/api/health", timeout=2).status_code == 200,
               timeout=30, what=f"the API on {port} up")  # fmt: skip
    return process, url


async def publish_snapshots(nats_url: str, *keys: str) -> None:
    """A fresh snapshot of each of ``keys`` on the snapshots stream, as discovery sends it."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        for key in keys:
            snap = snapshot(key)
            await js.publish(SUBJECTS.snapshot(snap.instance_key), snap.to_json())
    finally:
        await client.close()


def instances_shown(url: str) -> set[str]:
    answer = httpx.get(f"{url}/api/all-instances", timeout=5)
    assert answer.status_code == 200, answer.text
    return {f"{i['Key']['Hostname']}:{i['Key']['Port']}" for i in answer.json()}


def metric(url: str, name: str) -> float:
    """The value of ``name`` on the API's /metrics."""
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not on /metrics")
