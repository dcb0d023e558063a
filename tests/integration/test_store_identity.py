"""Whose messages are whose (issue 13 §7): the API's durable consumers are named after its
store. Two ``orchestrator-topology-api`` processes on one real nats-server, each with a SQLite
file of its own, each get every snapshot (before, they shared one consumer name and split the
stream: each showed part of the fleet). Two sharing one PostgreSQL database share the work:
each snapshot is written once, and both show the whole fleet. A store made by an earlier
release keeps the consumer names it had (no replay of the whole events stream on upgrade).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator_api.store import open_store
from orchestrator_api.store.consumer import DEFAULT_DURABLE_PREFIX, durable_prefix
from orchestrator_shared.bus import Subjects
from tests import harness
from tests.integration.api_process import (
    instances_shown,
    launch_api,
    metric,
    publish_snapshots,
)
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_stack import stop

pytestmark = pytest.mark.integration

SUBJECTS = Subjects()
FLEET = [f"db{n}:3306" for n in range(1, 21)]


def snapshots_written(url: str) -> float:
    return metric(url, "orchestrator_api_snapshots_written_total")


def two_apis(
    configs: list[dict[str, Any]], tmp_path: Path, nats_url: str
) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    processes, urls = [], []
    for n, config in enumerate(configs):
        process, url = launch_api({"NATSServers": [nats_url], **config}, tmp_path / f"api-{n}")
        processes.append(process)
        urls.append(url)
    return processes, urls


def everything_shown_by(urls: list[str]) -> Callable[[], bool]:
    return lambda: all(instances_shown(url) == set(FLEET) for url in urls)


async def test_apis_with_their_own_sqlite_files_each_get_every_snapshot(
    nats_server: harness.NatsLike, tmp_path: Path
) -> None:
    configs = [{"SQLite3DataFile": str(tmp_path / f"api-{n}.sqlite3")} for n in (0, 1)]
    processes, urls = two_apis(configs, tmp_path, nats_server.url)
    try:
        await publish_snapshots(nats_server.url, *FLEET)
        await asyncio.to_thread(
            wait_until, everything_shown_by(urls), timeout=20, what="both APIs show the fleet"
        )
        assert [snapshots_written(url) for url in urls] == [len(FLEET), len(FLEET)]
    finally:
        outputs = [stop(process) for process in processes]
    assert [code for code, _ in outputs] == [0, 0], outputs


async def test_apis_sharing_postgres_share_the_work(
    nats_server: harness.NatsLike, postgres_db: harness.PostgresDatabase, tmp_path: Path
) -> None:
    config = {"BackendDB": "postgres", "PostgreSQLDSN": postgres_db.dsn}
    processes, urls = two_apis([config, config], tmp_path, nats_server.url)
    try:
        await publish_snapshots(nats_server.url, *FLEET)
        await asyncio.to_thread(
            wait_until, everything_shown_by(urls), timeout=20, what="both APIs show the fleet"
        )
        await asyncio.sleep(1)  # nothing else arrives: each snapshot was written once
        assert sum(snapshots_written(url) for url in urls) == len(FLEET)
    finally:
        outputs = [stop(process) for process in processes]
    assert [code for code, _ in outputs] == [0, 0], outputs


async def test_a_store_from_an_earlier_release_keeps_its_consumer_names(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = await open_store("sqlite", sqlite_path=path)
    fresh = await store.identity()
    await store.close()
    assert fresh and durable_prefix(fresh) == f"{DEFAULT_DURABLE_PREFIX}-{fresh}"
    assert await reopened_identity(path) == fresh  # the same database, the same id

    # as an earlier release left it: schema version 4, no identity table
    with sqlite3.connect(path) as connection:
        connection.execute("DROP TABLE store_identity")
        connection.execute("DELETE FROM schema_version WHERE version = 5")
    assert await reopened_identity(path) == ""
    assert durable_prefix("") == DEFAULT_DURABLE_PREFIX


async def reopened_identity(path: Path) -> str:
    store = await open_store("sqlite", sqlite_path=path)
    try:
        return await store.identity()
    finally:
        await store.close()
