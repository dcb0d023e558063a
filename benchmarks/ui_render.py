"""How fast the web UI's cluster page draws a 200-instance cluster, first and after an update,
in headless Chromium (issue 11: "first render and an update under 200 ms").

It starts its own nats-server (JetStream), etcd, one ``orchestrator-recovery`` worker (the page
reads the maintenance list and the global recovery switch through it) and ONE
``orchestrator-topology-api`` (SQLite in the work directory), and publishes snapshots of a
simulated cluster straight onto ``orchestrator.v1.snapshot.<token>``, as discovery would: one
master, ``--intermediates`` intermediate masters under it and the rest of the ``--instances``
spread below them (all on 127.0.0.1, ports nobody listens on: nothing probes them here). Once
the API lists them all, for each of ``--runs`` runs it opens the cluster page in a fresh browser
context of Debian's chromium (``/usr/bin/chromium``, driven by Playwright) and reads the page's
own measure, ``window.__lastRender = {instances, ms}`` (fetch to painted, after every render):

* first render: the page loaded, until the tree of every instance is painted;
* update: ``--updates`` times, a new snapshot of one replica (another lag, read-only flipped) is
  published; the API stores it and pushes ``changed`` on ``/api/stream``; the page refetches and
  redraws. The page's ms for that redraw is the update figure; the time from the publication
  until the page has redrawn (bus, store, event stream, fetch and paint) is shown beside it.

Reports median and max of both over all runs, the page's own share of each (``renderMs``: from
the API's answers to painted) and, for comparison, how long the API alone takes to answer each
read the page makes; exits 1 if a median is 200 ms or more, 2 if the benchmark could not run.
Every process it starts is stopped on any exit.

    uv run --no-sync python benchmarks/ui_render.py [--instances 200] [--runs 5] [--updates 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from benchlib import (
    LOOPBACK,
    BenchmarkError,
    Children,
    Figure,
    api_json,
    free_port,
    free_port_block,
    http_get,
    print_table,
    report_title,
    run_benchmark,
    start_etcd,
    start_nats,
    verdict,
    work_directory,
)
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from orchestrator_shared.bus import Subjects
from orchestrator_shared.command_signing import generate_key
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import (
    Flavor,
    InstanceSnapshot,
    ProbeFacts,
    ReplicationChannel,
    ThreadState,
)

CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 200.0
VERSION = "10.11.19-MariaDB-log"
# What the page reads from the recovery worker (503 until it answers the API).
WORKER_READS = ("/api/check-global-recoveries", "/api/maintenance")

SIGNING_KEY = generate_key()  # the API signs commands, the worker verifies


@dataclass
class Fleet:
    """The simulated cluster: each instance's master ('' for the master) and replicas."""

    keys: list[InstanceKey]
    masters: dict[InstanceKey, InstanceKey | None]
    replicas: dict[InstanceKey, list[InstanceKey]] = field(default_factory=dict)

    @property
    def master(self) -> InstanceKey:
        return self.keys[0]


def build_fleet(instances: int, intermediates: int) -> Fleet:
    base = free_port_block(instances)  # ports nobody else uses meanwhile; nothing listens
    keys = [InstanceKey(host=LOOPBACK, port=base + i) for i in range(instances)]
    masters: dict[InstanceKey, InstanceKey | None] = {keys[0]: None}
    middle = keys[1 : 1 + intermediates]
    for key in middle:
        masters[key] = keys[0]
    for n, key in enumerate(keys[1 + intermediates :]):
        masters[key] = middle[n % len(middle)] if middle else keys[0]
    replicas: dict[InstanceKey, list[InstanceKey]] = {key: [] for key in keys}
    for key, master in masters.items():
        if master is not None:
            replicas[master].append(key)
    return Fleet(keys, masters, replicas)


def snapshot(fleet: Fleet, key: InstanceKey, *, lag: int = 0, read_only: bool = True) -> bytes:
    now = datetime.now(UTC)
    master = fleet.masters[key]
    channels: tuple[ReplicationChannel, ...] = ()
    if master is not None:
        channels = (
            ReplicationChannel(
                master_key=str(master),
                master_user="repl",
                io_running="Yes",
                sql_running="Yes",
                io_thread=ThreadState.RUNNING,
                sql_thread=ThreadState.RUNNING,
                seconds_behind_master=lag,
                master_server_id=master.port,
                using_gtid="Slave_Pos",
                gtid_io_pos=f"0-{fleet.master.port}-1000",
            ),
        )
    return InstanceSnapshot(
        key=str(key),
        probe=ProbeFacts(ok=True, checked_at=now, attempted_at=now, last_seen_at=now),
        server_id=key.port,
        version=VERSION,
        flavor=Flavor.MARIADB,
        read_only=master is not None and read_only,
        log_bin=True,
        log_slave_updates=True,
        binlog_format="ROW",
        gtid_domain_id=0,
        gtid_binlog_pos=f"0-{fleet.master.port}-1000",
        gtid_current_pos=f"0-{fleet.master.port}-1000",
        gtid_slave_pos="" if master is None else f"0-{fleet.master.port}-1000",
        gtid_strict_mode=True,
        channels=channels,
        replica_keys=tuple(str(r) for r in fleet.replicas[key]),
        data_center=f"dc{key.port % 3}",
        replication_lag_seconds=None if master is None else lag,
    ).to_json()


async def publish(nats_url: str, messages: list[tuple[InstanceKey, bytes]]) -> None:
    subjects = Subjects()
    nc = await nats.connect(nats_url, name="ui-render")
    try:
        js = nc.jetstream()
        for key, data in messages:
            await js.publish(subjects.snapshot(key), data)
    finally:
        await nc.close()


def publish_now(nats_url: str, messages: list[tuple[InstanceKey, bytes]]) -> None:
    """:func:`publish` from a thread of its own (Playwright's sync API runs a loop here)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish(nats_url, messages)).result()


def script(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(f"{name} not installed in this environment")
    return found


def start_worker(children: Children, nats_url: str, etcd: str) -> None:
    """One recovery worker, so that the page's recovery and maintenance reads have a leader to
    ask (they answer 503 without one); the simulated instances never fail, so it only reads."""
    config = children.workdir / "recovery.conf.json"
    config.write_text(
        json.dumps(
            {"NATSServers": [nats_url], "EtcdEndpoints": [etcd], "CommandSigningKey": SIGNING_KEY}
        )
    )
    children.start(
        "recovery",
        [script("orchestrator-recovery"), "--config", str(config)],
        env={"ORCHESTRATOR_LOG_LEVEL": "WARNING"},
    )


def start_api(children: Children, nats_url: str, etcd: str) -> str:
    port = free_port()
    config = children.workdir / "topology-api.conf.json"
    config.write_text(
        json.dumps(
            {
                "ListenAddress": f"{LOOPBACK}:{port}",
                "NATSServers": [nats_url],
                "EtcdEndpoints": [etcd],
                "SQLite3DataFile": str(children.workdir / "orchestrator.sqlite3"),
                "CommandSigningKey": SIGNING_KEY,  # the worker refuses unsigned commands
            },
            indent=2,
        )
    )
    api = children.start(
        "topology-api",
        [script("orchestrator-topology-api"), "--config", str(config)],
        env={"ORCHESTRATOR_LOG_LEVEL": "WARNING"},
    )
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + 30
    while http_get(f"{url}/api/_ping") is None:
        if not api.is_running():
            raise BenchmarkError(f"topology-api exited:\n{api.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError("topology-api not answering within 30 s")
        time.sleep(0.2)
    return url


def wait_listed(api: str, fleet: Fleet, timeout: float = 60) -> str:
    """Until the API lists every instance in one cluster; its name."""
    deadline = time.monotonic() + timeout
    counted = 0
    while time.monotonic() < deadline:
        answer = httpx.get(f"{api}/api/cluster/{fleet.master}", timeout=5)
        if answer.status_code == 200:
            counted = len(answer.json())
            if counted == len(fleet.keys):
                return str(answer.json()[0]["ClusterName"])
        time.sleep(0.3)
    raise BenchmarkError(f"the API lists {counted}/{len(fleet.keys)} instances after {timeout} s")


@dataclass
class Run:
    first_ms: float
    first_render_ms: float  # the page's share: from the API's answers to painted
    updates_ms: list[float]
    updates_render_ms: list[float]
    updates_wall_ms: list[float]


def last_render(page: Page) -> dict[str, Any]:
    found = page.evaluate("window.__lastRender || null")
    if not isinstance(found, dict):
        raise BenchmarkError("the page set no window.__lastRender")
    return found


@dataclass
class Target:
    """The running API, the cluster it lists, and the bus its snapshots come from."""

    api: str
    cluster: str
    fleet: Fleet
    nats_url: str
    api_ms: dict[str, float] = field(default_factory=dict)  # median answer time per read


def time_reads(http: httpx.Client, cluster: str, times: int = 5) -> dict[str, float]:
    """The median time the API takes to answer each read the cluster page makes (alone)."""
    found = {}
    for path in (f"/api/cluster/{cluster}", f"/api/replication-analysis/{cluster}", *WORKER_READS):
        took = []
        for _ in range(times):
            started = time.monotonic()
            http.get(path).raise_for_status()
            took.append((time.monotonic() - started) * 1000)
        found[path] = statistics.median(took)
    return found


def measure_run(browser: Browser, target: Target, args: argparse.Namespace) -> Run:
    api, cluster, fleet, nats_url = target.api, target.cluster, target.fleet, target.nats_url
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on(
            "console",
            lambda m: errors.append(f"{m.text} {m.location['url']}") if m.type == "error" else None,
        )
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{api}/#/cluster/{cluster}")
        page.wait_for_function(
            f"window.__lastRender && window.__lastRender.instances === {len(fleet.keys)}",
            timeout=30_000,
        )
        shown = last_render(page)
        first, first_render = float(shown["ms"]), float(shown.get("renderMs", "nan"))
        page.wait_for_function("document.body.dataset.live === 'connected'", timeout=10_000)
        updates, renders, walls = [], [], []
        for n in range(args.updates):
            key = fleet.keys[-1 - n]
            before = float(last_render(page)["at"])
            data = snapshot(fleet, key, lag=n + 3, read_only=n % 2 == 0)
            published = time.monotonic()
            publish_now(nats_url, [(key, data)])
            page.wait_for_function(f"window.__lastRender.at > {before}", timeout=10_000)
            walls.append((time.monotonic() - published) * 1000)
            shown = last_render(page)
            if shown["instances"] != len(fleet.keys):
                raise BenchmarkError(f"the update drew {shown['instances']} instances")
            updates.append(float(shown["ms"]))
            renders.append(float(shown.get("renderMs", "nan")))
            time.sleep(0.3)  # let the page settle: no coalesced double update
        if errors:
            raise BenchmarkError(f"console errors on the page: {errors}")
        return Run(first, first_render, updates, renders, walls)
    except PlaywrightError as exc:
        raise BenchmarkError(f"browser: {exc}") from exc
    finally:
        context.close()


def measure(args: argparse.Namespace, children: Children) -> tuple[list[Run], dict[str, float]]:
    nats_url, _ = start_nats(children)
    etcd = start_etcd(children)
    start_worker(children, nats_url, etcd)
    api = start_api(children, nats_url, etcd)
    fleet = build_fleet(args.instances, args.intermediates)
    asyncio.run(publish(nats_url, [(key, snapshot(fleet, key)) for key in fleet.keys]))
    target = Target(api, wait_listed(api, fleet), fleet, nats_url)
    with httpx.Client(base_url=api, timeout=5) as http:
        deadline = time.monotonic() + 60
        while not all(api_json(http, path) is not None for path in WORKER_READS):
            if time.monotonic() > deadline:
                raise BenchmarkError("the recovery worker does not answer the API after 60 s")
            time.sleep(0.2)
        target.api_ms = time_reads(http, target.cluster)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            runs = [measure_run(browser, target, args) for _ in range(args.runs)]
            return runs, target.api_ms
        finally:
            browser.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--intermediates", type=int, default=9)
    parser.add_argument("--runs", type=int, default=5, help="fresh page loads")
    parser.add_argument("--updates", type=int, default=5, help="live updates per page load")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.instances < 2 or args.runs < 1 or args.updates < 1:
        parser.error("--instances must be at least 2, --runs and --updates at least 1")
    if not 0 <= args.intermediates < args.instances - 1:
        parser.error("--intermediates must leave room for the master and one replica")
    return args


def summarize(runs: list[Run], api_ms: dict[str, float], args: argparse.Namespace) -> int:
    firsts = [run.first_ms for run in runs]
    updates = [ms for run in runs for ms in run.updates_ms]
    walls = [ms for run in runs for ms in run.updates_wall_ms]
    first_page = statistics.median(run.first_render_ms for run in runs)
    update_page = statistics.median(ms for run in runs for ms in run.updates_render_ms)
    first_median, update_median = statistics.median(firsts), statistics.median(updates)
    target = f"< {TARGET_MS:.0f} ms"
    figures = [
        Figure("instances in the cluster", str(args.instances)),
        Figure("page loads / updates", f"{len(firsts)} / {len(updates)}"),
        Figure("first render median", f"{first_median:.0f} ms", target, first_median < TARGET_MS),
        Figure("first render max", f"{max(firsts):.0f} ms"),
        Figure("  of which the page (answers -> painted), median", f"{first_page:.0f} ms"),
        Figure("update median", f"{update_median:.0f} ms", target, update_median < TARGET_MS),
        Figure("update max", f"{max(updates):.0f} ms"),
        Figure("  of which the page (answers -> painted), median", f"{update_page:.0f} ms"),
        Figure("publication -> redrawn median", f"{statistics.median(walls):.0f} ms"),
        Figure("publication -> redrawn max", f"{max(walls):.0f} ms"),
        *(Figure(f"API alone: GET {path}, median", f"{ms:.0f} ms") for path, ms in api_ms.items()),
    ]
    print_table(report_title("UI render, headless Chromium"), figures)
    return verdict([f.name for f in figures if f.ok is False])


def main() -> int:
    args = parse_args()

    def measure_in_work_directory() -> tuple[list[Run], dict[str, float]]:
        with work_directory("ui-render-", keep=args.keep) as children:
            return measure(args, children)

    return run_benchmark(
        "ui_render",
        measure_in_work_directory,
        lambda result: summarize(*result, args),
    )


if __name__ == "__main__":
    sys.exit(main())
