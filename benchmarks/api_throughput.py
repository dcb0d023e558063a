"""Requests per second and latency of one orchestrator-topology-api worker, and how soon a
published snapshot shows in it; on SQLite and on PostgreSQL.

For each backend it starts its own nats-server (JetStream), a simulated fleet
(``tests/harness/simfleet.py``; by default 100 clusters of 1 master + 9 replicas = 1,000
instances), ONE ``orchestrator-discovery`` seeded with the 100 masters (it crawls the replicas
and keeps probing everything every ``InstancePollSeconds``, so the API keeps ingesting while it
is measured) and ONE ``orchestrator-topology-api`` (one uvicorn worker) storing into a SQLite
file in the work directory or into a PostgreSQL database of its own (``orch_bench_<random>``,
created here and dropped on every exit). Once the API lists every instance, it gives each
cluster an alias (``bench-000`` ...) through ``/api/set-cluster-alias``, then:

* drives each route with ``wrk`` (50 connections, one wrk thread: a C load generator, so the
  API keeps a core to itself) for a warm-up and then a measured window: ``/api/cluster/{alias}``
  over the 100 aliases at random, ``/api/clusters-info``, ``/api/instance/{host}/{port}`` over
  the 1,000 instances at random; reports requests/s, p50/p99 latency, non-2xx answers and the
  CPU every process took meanwhile;
* publishes, ``--visibility-runs`` times, a snapshot of a new (fake) instance straight to
  ``orchestrator.v1.snapshot.<token>`` on JetStream, and polls ``/api/instance/...`` every
  ``--poll-ms`` until it answers 200: publication-to-visibility p50/p99.

Prints a table per backend; exits 1 if a target is missed, 2 if the benchmark could not run.
Every process it starts is stopped on any exit (and killed by the kernel if this one dies).

    uv run --no-sync python benchmarks/api_throughput.py [--backend sqlite|postgres|both]
        [--seconds 15] [--warmup 5] [--connections 50] [--visibility-runs 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import nats
import psutil
from benchlib import (
    LOOPBACK,
    BenchmarkError,
    Child,
    Children,
    Figure,
    cancel_on_stop_signals,
    cpu_seconds,
    free_port,
    http_get,
    machine_busy_seconds,
    percentile,
    print_table,
    report_title,
    run_async_benchmark,
    start_discovery,
    start_nats,
    start_simfleet,
    verdict,
    work_directory,
    workspace_executable,
)

from orchestrator_shared.bus import Subjects
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import Flavor, InstanceSnapshot, ProbeFacts

POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ALIAS_FORMAT = "bench-{:03d}"
# Fake instances for the visibility runs: ports far below the simulated fleet's block.
FAKE_PORT_BASE = 1000

_WRK_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_WRK_TOTAL = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", re.MULTILINE)
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True, slots=True)
class Route:
    """One route driven by wrk: a name for the table and the paths picked at random."""

    name: str
    paths: tuple[str, ...]
    target_rate: float | None = None
    target_p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class LoadResult:
    rate: float
    p50: float
    p99: float
    requests: int
    non_2xx: int
    socket_errors: int
    cpu: dict[str, float]  # process -> cores used in the window
    others: float


@dataclass
class Stack:
    """The processes of one backend's run."""

    api: Child
    discovery: Child
    simfleet: Child
    nats: Child
    nats_url: str
    api_url: str
    postgres_database: str = ""

    def alive(self) -> None:
        for child in (self.api, self.discovery, self.simfleet, self.nats):
            if not child.is_running():
                raise BenchmarkError(f"{child.name} exited:\n{child.log_tail()}")

    def pids(self) -> dict[str, int]:
        return {
            "topology-api": self.api.pid,
            "discovery": self.discovery.pid,
            "simfleet": self.simfleet.pid,
            "nats-server": self.nats.pid,
            "benchmark": os.getpid(),
        }


# --- PostgreSQL database of our own -----------------------------------------------------------


async def create_database() -> str:
    name = f"orch_bench_{secrets.token_hex(4)}"
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def postgres_backends_cpu(database: str) -> float:
    """CPU seconds of the PostgreSQL server processes serving ``database`` (read-only look)."""
    total = 0.0
    for process in psutil.process_iter(["cmdline", "cpu_times"]):
        cmdline = process.info.get("cmdline") or []
        times = process.info.get("cpu_times")
        if times is not None and any(f" {database} " in f" {part} " for part in cmdline):
            total += times.user + times.system
    return total


# --- the stack --------------------------------------------------------------------------------


async def start_stack(
    args: argparse.Namespace, children: Children, backend: str, database: str
) -> Stack:
    base, simfleet = start_simfleet(
        children, clusters=args.clusters, cluster_size=args.cluster_size
    )
    nats_url, nats_child = start_nats(children)
    masters = [f"{LOOPBACK}:{base + c * args.cluster_size}" for c in range(args.clusters)]
    discovery = start_discovery(
        children,
        {
            "DiscoverySeeds": masters,
            "InstancePollSeconds": args.poll_seconds,
            "NATSServers": [nats_url],
            "MySQLTopologyUser": "bench",
            "MySQLTopologyPassword": "bench",
            "DiscoveryMetricsListenAddress": f"{LOOPBACK}:{free_port()}",
        },
        log_level="WARNING",
    )
    api_port = free_port()
    settings: dict[str, Any] = {
        "ListenAddress": f"{LOOPBACK}:{api_port}",
        "NATSServers": [nats_url],
        "InstancePollSeconds": args.poll_seconds,
        "BackendDB": backend,
    }
    if backend == "sqlite":
        settings["SQLite3DataFile"] = str(children.workdir / "orchestrator.sqlite3")
    else:
        settings["PostgreSQLDSN"] = f"postgresql://postgres@127.0.0.1:5432/{database}"
    config = children.workdir / "topology-api.conf.json"
    config.write_text(json.dumps(settings, indent=2))
    program = [workspace_executable("orchestrator-topology-api")]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        stats = args.profile / f"api-{backend}.prof"
        program = [sys.executable, "-m", "cProfile", "-o", str(stats)]
        program += ["-m", "orchestrator_api.main"]
    api = children.start(
        "topology-api",
        [*program, "--config", str(config)],
        env={"ORCHESTRATOR_LOG_LEVEL": "WARNING"},
    )
    api_url = f"http://{LOOPBACK}:{api_port}"
    stack = Stack(api, discovery, simfleet, nats_child, nats_url, api_url, database)
    deadline = time.monotonic() + 30
    while await asyncio.to_thread(http_get, f"{api_url}/api/_ping") is None:
        stack.alive()
        if time.monotonic() > deadline:
            raise BenchmarkError("topology-api not answering within 30s")
        await asyncio.sleep(0.2)
    return stack


async def wait_for_fleet(
    args: argparse.Namespace, stack: Stack, client: httpx.AsyncClient
) -> tuple[list[str], float]:
    """Wait until the API lists every instance; the cluster names and how long it took."""
    instances = args.clusters * args.cluster_size
    started = time.monotonic()
    while True:
        stack.alive()
        answer = await client.get("/api/clusters-info")
        if answer.status_code == 200:
            infos = answer.json()
            counted = sum(info["CountInstances"] for info in infos)
            if counted >= instances and len(infos) >= args.clusters:
                return sorted(info["ClusterName"] for info in infos), time.monotonic() - started
        if time.monotonic() - started > args.startup_timeout:
            raise BenchmarkError(
                f"the API lists {counted if answer.status_code == 200 else '?'}/{instances} "
                f"instances after {args.startup_timeout:g}s"
            )
        await asyncio.sleep(0.5)


async def set_aliases(client: httpx.AsyncClient, clusters: list[str]) -> list[str]:
    aliases = []
    for number, name in enumerate(clusters):
        alias = ALIAS_FORMAT.format(number)
        answer = await client.get(f"/api/set-cluster-alias/{name}", params={"alias": alias})
        if answer.status_code != 200:
            raise BenchmarkError(f"set-cluster-alias {name}: {answer.status_code} {answer.text}")
        aliases.append(alias)
    check = await client.get(f"/api/cluster/{aliases[0]}")
    if check.status_code != 200 or len(check.json()) == 0:
        raise BenchmarkError(f"/api/cluster/{aliases[0]}: {check.status_code} {check.text[:200]}")
    return aliases


# --- load with wrk ----------------------------------------------------------------------------


def find_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchmarkError("wrk not found: apt-get install wrk (Debian package 'wrk')")
    return found


def wrk_script(workdir: Path, route: Route, seed: int) -> Path:
    """A Lua script making wrk request one of ``route.paths`` at random, per request."""
    paths = ",\n".join(json.dumps(path) for path in route.paths)
    script = workdir / f"wrk-{route.name.strip('/').replace('/', '-')}.lua"
    script.write_text(
        f"math.randomseed({seed})\n"
        f"local paths = {{\n{paths}\n}}\n"
        "request = function()\n"
        "  return wrk.format('GET', paths[math.random(#paths)])\n"
        "end\n"
    )
    return script


def parse_wrk(text: str) -> tuple[float, float, float, int, int, int]:
    """requests/s, p50 s, p99 s, requests, non-2xx answers, socket errors."""
    percentiles = {m.group(1): float(m.group(2)) * _UNIT_SECONDS[m.group(3)] for m in
                   _WRK_PERCENTILE.finditer(text)}  # fmt: skip
    rate, total = _WRK_RATE.search(text), _WRK_TOTAL.search(text)
    if rate is None or total is None or set(percentiles) != {"50", "99"}:
        raise BenchmarkError(f"cannot read wrk's output:\n{text}")
    non_2xx = _WRK_NON_2XX.search(text)
    errors = _WRK_SOCKET_ERRORS.search(text)
    return (
        float(rate.group(1)),
        percentiles["50"],
        percentiles["99"],
        int(total.group(1)),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(int(n) for n in errors.groups()) if errors else 0,
    )


async def run_wrk(
    children: Children, stack: Stack, script: Path, *, seconds: float, connections: int
) -> tuple[str, float]:
    """Run wrk to its end; its output and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk = children.start(
        f"wrk-{script.stem}",
        [
            find_wrk(), "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
            "--latency", "-s", str(script), stack.api_url,
        ],
    )  # fmt: skip
    await asyncio.to_thread(wrk.process.wait, seconds + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children.stop(wrk)
    children.children.remove(wrk)  # reaped: its process group id must not be signalled again
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wrk.log_path.read_text(errors="replace"), used


async def measure_route(
    args: argparse.Namespace, children: Children, stack: Stack, route: Route, seed: int
) -> LoadResult:
    script = wrk_script(children.workdir, route, seed)
    await run_wrk(children, stack, script, seconds=args.warmup, connections=args.connections)
    stack.alive()
    pids = stack.pids()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    pg_before = postgres_backends_cpu(stack.postgres_database) if stack.postgres_database else 0
    busy_before = machine_busy_seconds()
    started = time.monotonic()
    output, wrk_cpu = await run_wrk(
        children, stack, script, seconds=args.seconds, connections=args.connections
    )
    wall = time.monotonic() - started
    stack.alive()
    cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / wall for name, pid in pids.items()}
    cpu["wrk"] = wrk_cpu / wall
    if stack.postgres_database:
        cpu["postgresql"] = (postgres_backends_cpu(stack.postgres_database) - pg_before) / wall
    others = (machine_busy_seconds() - busy_before) / wall - sum(cpu.values())
    rate, p50, p99, requests, non_2xx, socket_errors = parse_wrk(output)
    return LoadResult(rate, p50, p99, requests, non_2xx, socket_errors, cpu, max(others, 0.0))


# --- publication -> visibility ----------------------------------------------------------------


def fake_snapshot(key: InstanceKey) -> InstanceSnapshot:
    now = datetime.now(UTC)
    return InstanceSnapshot(
        key=str(key),
        probe=ProbeFacts(ok=True, checked_at=now, attempted_at=now, last_seen_at=now),
        server_id=key.port,
        version="10.11.19-MariaDB-log",
        flavor=Flavor.MARIADB,
        log_bin=True,
    )


async def measure_visibility(
    args: argparse.Namespace, stack: Stack, client: httpx.AsyncClient
) -> list[float]:
    """Seconds from publishing a new instance's snapshot to a 200 from /api/instance."""
    subjects = Subjects()
    nc = await nats.connect(stack.nats_url, name="api-throughput")
    delays = []
    try:
        js = nc.jetstream()
        for run in range(args.visibility_runs):
            key = InstanceKey(host=LOOPBACK, port=FAKE_PORT_BASE + run)
            path = f"/api/instance/{key.host}/{key.port}"
            data = fake_snapshot(key).to_json()
            # Land anywhere in the consumer's fetch cycle.
            await asyncio.sleep(random.uniform(0.05, 0.3))
            published = time.monotonic()
            await js.publish(subjects.snapshot(key), data)
            while True:
                answer = await client.get(path)
                if answer.status_code == 200:
                    delays.append(time.monotonic() - published)
                    break
                if time.monotonic() - published > 10:
                    raise BenchmarkError(f"{key} not visible 10 s after its publication")
                await asyncio.sleep(args.poll_ms / 1000)
            stack.alive()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
    return delays


# --- one backend ------------------------------------------------------------------------------


def routes_of(aliases: list[str], keys: list[str], args: argparse.Namespace) -> list[Route]:
    instance_paths = tuple(f"/api/instance/{k.rsplit(':', 1)[0]}/{k.rsplit(':', 1)[1]}"
                           for k in keys)  # fmt: skip
    return [
        Route(
            "/api/cluster/{alias}",
            tuple(f"/api/cluster/{alias}" for alias in aliases),
            target_rate=args.target_rate,
            target_p99_ms=args.target_p99_ms,
        ),
        Route("/api/clusters-info", ("/api/clusters-info",)),
        Route("/api/instance/{host}/{port}", instance_paths),
    ]


async def measure_backend(
    args: argparse.Namespace, children: Children, backend: str, database: str
) -> list[Figure]:
    instances = args.clusters * args.cluster_size
    stack = await start_stack(args, children, backend, database)
    figures = [
        Figure("backend", backend),
        Figure("instances (clusters x size)", f"{instances} ({args.clusters}x{args.cluster_size})"),
    ]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=10) as client:
        clusters, waited = await wait_for_fleet(args, stack, client)
        figures.append(Figure("all instances listed by the API after", f"{waited:.1f} s"))
        aliases = await set_aliases(client, clusters)
        keys = [
            node["Key"]["Hostname"] + ":" + str(node["Key"]["Port"])
            for node in (await client.get("/api/all-instances")).json()
        ]
        print(f"[{backend}] {len(keys)} instances in {len(aliases)} aliased clusters; measuring")
        if args.pause_discovery:
            # Diagnostic: no snapshot arrives any more, so the API only answers requests.
            os.kill(stack.discovery.pid, signal.SIGSTOP)
            figures.append(Figure("discovery", "paused (SIGSTOP): no ingest while measured"))
        try:
            for number, route in enumerate(routes_of(aliases, keys, args)):
                result = await measure_route(args, children, stack, route, seed=number + 1)
                print(f"[{backend}] {route.name}: {result.rate:.0f} req/s")
                figures += route_figures(route, result)
            delays = await measure_visibility(args, stack, client)
        finally:
            if args.pause_discovery:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(stack.discovery.pid, signal.SIGCONT)
    p50, p99 = percentile(delays, 50), percentile(delays, 99)
    figures += [
        Figure(f"publish -> visible p50 ({len(delays)} runs)", f"{p50 * 1000:.0f} ms"),
        Figure(
            "publish -> visible p99",
            f"{p99 * 1000:.0f} ms",
            f"<= {args.target_visibility_ms:g} ms",
            p99 * 1000 <= args.target_visibility_ms,
        ),
        Figure("publish -> visible max", f"{max(delays) * 1000:.0f} ms"),
    ]
    return figures


def route_figures(route: Route, result: LoadResult) -> list[Figure]:
    name = route.name
    rate_target = f">= {route.target_rate:g}" if route.target_rate is not None else ""
    p99_target = f"<= {route.target_p99_ms:g} ms" if route.target_p99_ms is not None else ""
    cpu = ", ".join(
        f"{process} {share * 100:.0f}%" for process, share in result.cpu.items() if share >= 0.005
    )
    return [
        Figure(
            f"{name} req/s",
            f"{result.rate:.0f}",
            rate_target,
            None if route.target_rate is None else result.rate >= route.target_rate,
        ),
        Figure(f"{name} p50", f"{result.p50 * 1000:.1f} ms"),
        Figure(
            f"{name} p99",
            f"{result.p99 * 1000:.1f} ms",
            p99_target,
            None if route.target_p99_ms is None else result.p99 * 1000 <= route.target_p99_ms,
        ),
        Figure(
            f"{name} errors (non-2xx, socket)",
            f"{result.non_2xx}, {result.socket_errors}",
            "0, 0",
            result.non_2xx == 0 and result.socket_errors == 0,
        ),
        Figure(f"{name} CPU (100% = 1 core)", cpu),
        Figure(f"{name} other load", f"{result.others * 100:.0f}%", "(should be ~0)"),
    ]


# Databases created and not dropped yet: main() drops them on a fresh event loop if the run's
# own drop was cancelled (a second Ctrl-C, or SIGTERM after SIGINT).
_undropped: set[str] = set()


async def run_backend(args: argparse.Namespace, backend: str) -> list[Figure]:
    database = ""
    try:
        with work_directory(f"api-throughput-{backend}-", keep=args.keep) as children:
            if backend == "postgres":
                database = await create_database()
                _undropped.add(database)
            return await measure_backend(args, children, backend, database)
    finally:
        if database:
            await asyncio.shield(drop_database(database))
            _undropped.discard(database)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--cluster-size", type=int, default=10)
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="InstancePollSeconds")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per route")
    parser.add_argument("--warmup", type=float, default=5.0, help="wrk warm-up per route")
    parser.add_argument("--visibility-runs", type=int, default=100)
    parser.add_argument("--poll-ms", type=float, default=2.0, help="visibility poll interval")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--target-rate", type=float, default=1500.0, help="/api/cluster req/s")
    parser.add_argument("--target-p99-ms", type=float, default=20.0, help="/api/cluster p99")
    parser.add_argument("--target-visibility-ms", type=float, default=100.0)
    parser.add_argument(
        "--pause-discovery",
        action="store_true",
        help="diagnostic: SIGSTOP discovery once the fleet is listed (measures the API "
        "without snapshot ingest)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="run the API under cProfile; stats in DIR/api-<backend>.prof (slows it down)",
    )
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    cancel_on_stop_signals()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    tables = []
    try:
        find_wrk()
        for backend in backends:
            tables.append((backend, await run_backend(args, backend)))
    except (BenchmarkError, OSError, asyncpg.PostgresError, httpx.HTTPError) as exc:
        print(f"api_throughput: {exc}", file=sys.stderr)
        return 2
    for backend, figures in tables:
        print_table(report_title(f"topology-api throughput, {backend}"), figures)
    missed = [f"{backend}: {f.name}" for backend, figures in tables for f in figures
              if f.ok is False]  # fmt: skip
    return verdict(missed, separator="; ")


def main() -> int:
    args = parse_args()
    try:
        return run_async_benchmark("api_throughput", main_async(args))
    finally:
        for database in sorted(_undropped):
            try:
                asyncio.run(drop_database(database))
            except (OSError, asyncpg.PostgresError) as exc:
                print(f"api_throughput: could not drop database {database}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
