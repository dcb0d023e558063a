"""What each service process of the stack costs in CPU and memory over a fleet of N instances:
the figures behind the Kubernetes requests/limits and the sizing guide (docs/benchmarks.md).

It starts, on free loopback ports and at default settings (``InstancePollSeconds`` 5, master
liveness every 0.5 s, etcd lease 3 s), the whole stack as a deployment runs it, one process per
service, each the workspace's console script (so the PID measured is the service's own):

* a simulated fleet (``tests/harness/simfleet.py``): ``--instances`` instances in clusters of
  ``--cluster-size`` (default 1,000 = 250 x 4), every master a discovery seed;
* nats-server (JetStream) and a one-member etcd;
* ``orchestrator-coordinator``, two ``orchestrator-recovery`` workers (one leads, one stands
  by; every cluster in ``RecoverMasterClusterFilters``), ``orchestrator-discovery``;
* ``orchestrator-topology-api`` on SQLite and, beside it, a second one on PostgreSQL (a
  throwaway server of its own on a free port, started by the test harness's
  ``PostgresCluster``), each consuming the whole snapshot stream into its own store.

Once both APIs list every instance and a worker leads, and after a warm-up, it measures a steady
window (``--seconds``, default 60) while a thread sends each API a steady read load
(``--api-rate`` requests/s, default 50: alternately ``/api/clusters-info`` and
``/api/cluster/<name>`` of a random cluster). For each process: average CPU (user + system time
over wall time; 100 % = one core), the busiest ``--sample-seconds`` window (default 5 s), RSS at
the end and its high-water mark since the process started (``VmHWM``, so the initial crawl is
included). The PostgreSQL server (all its processes; shared buffers counted in each RSS) and the
simulated fleet are shown for context, as are discovery's probes/s (does the stack keep up?)
and the load from everything else on the machine.

Prints a table, then one JSON line with the per-service figures. A ``NOT STEADY`` line before
it (and ``"steady": false``) says the window may understate the cost: other programs used more
than a quarter of a core, or discovery probed less than 97 % of its demand (a starved stack
does less work, so it looks cheaper). It has no targets: it exits 0 when the run completed, 2
when it could not run (130 when interrupted); every process it started is stopped on any exit.

    uv run --no-sync python benchmarks/footprint.py [--instances 1000] [--cluster-size 4]
        [--seconds 60] [--api-rate 50] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
from benchlib import (
    BENCHMARKS_DIR,
    LOOPBACK,
    BenchmarkError,
    Child,
    Children,
    Figure,
    cpu_seconds,
    free_port,
    http_get,
    machine_busy_seconds,
    percentile,
    print_table,
    read_metrics,
    report_title,
    run_benchmark,
    start_discovery,
    start_etcd,
    start_nats,
    start_simfleet,
    wait_until,
    work_directory,
    workspace_executable,
)

from orchestrator_shared.command_signing import generate_key

PROBES_METRIC = "orchestrator_discovery_probes_total"
BACKENDS = ("sqlite", "postgres")
MB = 2**20
# Past these the window was not steady: the figures are then a lower bound (the text says so).
BUSY_MACHINE = 0.25  # cores used by other programs meanwhile
KEEPING_UP = 0.97  # discovery's probes/s as a fraction of the demand (instances / poll)


# --- the processes measured -------------------------------------------------------------------


@dataclass
class Measured:
    """One process (with its descendants) and what was seen of it."""

    name: str
    pid: int
    context: bool = False  # not a service of the stack: shown, not sized
    descendants: bool = True  # its child processes count (PostgreSQL's backends)
    windows: list[float] = field(default_factory=list)  # cores used in each sample window
    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_end: int = 0
    rss_peak: int = 0

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.pid)
        return [root, *(root.children(recursive=True) if self.descendants else ())]

    def cpu_now(self) -> float:
        return cpu_seconds(self.pid, descendants=self.descendants)

    def read_memory(self) -> None:
        """RSS now and its high-water mark (``VmHWM``), summed over the process tree."""
        rss = peak = 0
        for process in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess, OSError):
                rss += process.memory_info().rss
                peak += _vm_hwm(process.pid)
        self.rss_end, self.rss_peak = rss, max(peak, rss)

    def average(self, wall: float) -> float:
        return (self.cpu_end - self.cpu_start) / wall

    def figures(self, wall: float) -> dict[str, float]:
        return {
            "cpu_avg_pct": round(self.average(wall) * 100, 1),
            "cpu_peak_pct": round(max(self.windows, default=0.0) * 100, 1),
            "rss_end_mb": round(self.rss_end / MB, 1),
            "rss_peak_mb": round(self.rss_peak / MB, 1),
        }


def _vm_hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# --- PostgreSQL of its own (the test harness's throwaway server) ------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[str, int]]:
    """A throwaway PostgreSQL on a free port: its DSN and the postmaster's PID; always closed.

    The harness handles what a benchmark would otherwise repeat: ``initdb`` as the ``postgres``
    OS user when run as root, the parent-death signal, the cleanup."""
    sys.path.insert(0, str(BENCHMARKS_DIR.parent))  # the repository root: ``tests.harness``
    from tests.harness.postgres import PostgresCluster  # noqa: PLC0415
    from tests.harness.process import HarnessError  # noqa: PLC0415

    try:
        cluster = PostgresCluster()
    except FileNotFoundError as exc:
        raise BenchmarkError(f"{exc} (or run with --backends sqlite)") from exc
    try:
        try:
            cluster.start()
        except HarnessError as exc:
            raise BenchmarkError(f"PostgreSQL did not start: {exc}") from exc
        if cluster.pid is None:
            raise BenchmarkError("PostgreSQL started without a PID")
        yield cluster.dsn, cluster.pid
    finally:
        cluster.close()


# --- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    children: list[Child]
    apis: dict[str, str]  # backend -> base URL
    coordinator_url: str
    metrics_port: int

    def alive(self) -> None:
        for child in self.children:
            if not child.is_running():
                raise BenchmarkError(f"{child.name} exited:\n{child.log_tail()}")

    def pid(self, name: str) -> int:
        return next(child.pid for child in self.children if child.name == name)


def write_config(children: Children, name: str, settings: dict[str, Any]) -> Path:
    path = children.workdir / f"{name}.conf.json"
    path.write_text(json.dumps(settings, indent=2))
    path.chmod(0o600)  # it holds the command signing key
    return path


def start_service(children: Children, name: str, script: str, settings: dict[str, Any]) -> Child:
    config = write_config(children, name, settings)
    return children.start(name, [workspace_executable(script), "--config", str(config)])


def start_stack(
    args: argparse.Namespace, children: Children, postgres_dsn: str | None
) -> tuple[Stack, Child, Child, Child]:
    """Everything but PostgreSQL; the stack, and the simulated fleet, nats-server and etcd."""
    clusters = args.instances // args.cluster_size
    base, simfleet = start_simfleet(children, clusters=clusters, cluster_size=args.cluster_size)
    nats_url, nats_child = start_nats(children)
    etcd_url = start_etcd(children)
    etcd_child = next(child for child in children.children if child.name == "etcd")
    common: dict[str, Any] = {
        "NATSServers": [nats_url],
        "EtcdEndpoints": [etcd_url],
        "InstancePollSeconds": args.poll_seconds,
        "DiscoverySeeds": [f"{LOOPBACK}:{base + c * args.cluster_size}" for c in range(clusters)],
        "MySQLTopologyUser": "bench",
        "MySQLTopologyPassword": "bench",
        "CommandSigningKey": generate_key(),
        "RecoverMasterClusterFilters": ["*"],
        "RecoverIntermediateMasterClusterFilters": ["*"],
    }
    coordinator_port = free_port()
    coordinator = start_service(
        children,
        "coordinator",
        "orchestrator-coordinator",
        common | {"CoordinatorListenAddress": f"{LOOPBACK}:{coordinator_port}"},
    )
    workers = [
        start_service(children, f"recovery-{n}", "orchestrator-recovery", common) for n in (1, 2)
    ]
    apis: dict[str, str] = {}
    api_children = []
    for backend in args.backends:
        port = free_port()
        settings = common | {"ListenAddress": f"{LOOPBACK}:{port}", "BackendDB": backend}
        if backend == "sqlite":
            settings["SQLite3DataFile"] = str(children.workdir / "orchestrator.sqlite3")
        else:
            settings["PostgreSQLDSN"] = postgres_dsn
        name = f"topology-api-{backend}"
        api_children.append(start_service(children, name, "orchestrator-topology-api", settings))
        apis[backend] = f"http://{LOOPBACK}:{port}"
    metrics_port = free_port()
    discovery = start_discovery(
        children,
        common | {"DiscoveryMetricsListenAddress": f"{LOOPBACK}:{metrics_port}"},
    )
    stack = Stack(
        [simfleet, nats_child, etcd_child, coordinator, *workers, *api_children, discovery],
        apis,
        f"http://{LOOPBACK}:{coordinator_port}",
        metrics_port,
    )
    return stack, simfleet, nats_child, etcd_child


def listed_instances(http: httpx.Client) -> tuple[int, list[str]]:
    """How many instances the API lists, and its cluster names (0, [] while it cannot say)."""
    try:
        answer = http.get("/api/clusters-info")
    except httpx.HTTPError:
        return 0, []
    if answer.status_code != 200:
        return 0, []
    infos = answer.json()
    return sum(int(i["CountInstances"]) for i in infos), [str(i["ClusterName"]) for i in infos]


def wait_for_fleet(args: argparse.Namespace, stack: Stack) -> tuple[float, list[str]]:
    """Seconds until every API lists every instance; the cluster names."""
    started = time.monotonic()
    names: list[str] = []
    for backend, url in stack.apis.items():
        with httpx.Client(base_url=url, timeout=10.0) as http:

            def everything_listed(http: httpx.Client = http) -> bool:
                nonlocal names
                count, names = listed_instances(http)
                return count >= int(args.instances)

            wait_until(
                everything_listed,
                timeout=args.startup_timeout,
                what=f"topology-api on {backend} lists {args.instances} instances",
                alive=stack.alive,
            )
    return time.monotonic() - started, names


def leader_pid(stack: Stack) -> int | None:
    answer = http_get(f"{stack.coordinator_url}/status")
    if answer is None:
        return None
    leader = json.loads(answer).get("leader")
    return int(leader["pid"]) if leader else None


# --- the API read load ------------------------------------------------------------------------


class ReadLoad:
    """``rate`` requests/s to each API on a fixed schedule (one thread, one connection per API),
    alternately ``/api/clusters-info`` and ``/api/cluster/<name>`` of a random cluster."""

    def __init__(self, apis: dict[str, str], clusters: list[str], rate: float) -> None:
        self._apis = apis
        self._paths = [f"/api/cluster/{quote(name, safe=':')}" for name in clusters]
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-load", daemon=True)
        self.latencies: list[float] = []
        self.failed = 0
        self.late = 0  # requests sent more than one interval behind schedule

    def __enter__(self) -> ReadLoad:
        if self._interval:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        clients = [httpx.Client(base_url=url, timeout=10.0) for url in self._apis.values()]
        try:
            due = time.monotonic()
            for number in _count():
                path = "/api/clusters-info" if number % 2 == 0 else random.choice(self._paths)
                for client in clients:
                    self._one(client, path)
                due += self._interval
                delay = due - time.monotonic()
                if delay < -self._interval:
                    self.late += 1
                if self._stop.wait(max(delay, 0.0)):
                    return
        finally:
            for client in clients:
                client.close()

    def _one(self, client: httpx.Client, path: str) -> None:
        started = time.perf_counter()
        try:
            ok = client.get(path).status_code == 200
        except httpx.HTTPError:
            ok = False
        self.latencies.append(time.perf_counter() - started)
        self.failed += not ok


def _count() -> Iterator[int]:
    number = 0
    while True:
        yield number
        number += 1


# --- the measurement --------------------------------------------------------------------------


@dataclass
class Result:
    args: argparse.Namespace
    crawl_seconds: float
    wall: float
    processes: list[Measured]
    probes_per_second: float
    others: float
    load: ReadLoad

    def services(self) -> list[Measured]:
        return [p for p in self.processes if not p.context]


def probes_total(port: int) -> float:
    metrics = read_metrics(port)
    if metrics is None:
        raise BenchmarkError(f"no /metrics from discovery on port {port}")
    return sum(v for k, v in metrics.items() if k.startswith(PROBES_METRIC + "{"))


def sample(
    processes: list[Measured], *, seconds: float, every: float, alive: Callable[[], None]
) -> float:
    """CPU of every process over ``seconds``, window by window; the wall time measured."""
    for process in processes:
        process.cpu_start = process.cpu_now()
    started = last = time.monotonic()
    previous = {p.name: p.cpu_start for p in processes}
    while last - started < seconds:
        time.sleep(min(every, seconds - (last - started)))
        alive()
        now = time.monotonic()
        for process in processes:
            cpu = process.cpu_now()
            process.windows.append((cpu - previous[process.name]) / (now - last))
            previous[process.name] = cpu
        last = now
    for process in processes:
        process.cpu_end = previous[process.name]
        process.read_memory()
    return last - started


def measure_stack(
    args: argparse.Namespace, children: Children, postgres: tuple[str, int] | None
) -> Result:
    stack, simfleet, nats_child, etcd_child = start_stack(
        args, children, postgres[0] if postgres else None
    )
    print(
        f"{args.instances} instances ({args.instances // args.cluster_size} clusters of "
        f"{args.cluster_size}), APIs on {', '.join(args.backends)}; work dir {children.workdir}",
        flush=True,
    )
    crawl_seconds, clusters = wait_for_fleet(args, stack)
    leader = wait_until(
        lambda: leader_pid(stack), timeout=30, what="a recovery worker leads", alive=stack.alive
    )
    workers = {stack.pid("recovery-1"), stack.pid("recovery-2")}
    if leader not in workers:
        raise BenchmarkError(f"the leader's PID {leader} is not one of the workers {workers}")
    (standby,) = workers - {leader}
    print(f"every API lists every instance after {crawl_seconds:.1f} s; warming up", flush=True)
    processes = [
        Measured("discovery", stack.pid("discovery")),
        *(Measured(f"topology-api ({b})", stack.pid(f"topology-api-{b}")) for b in args.backends),
        Measured("recovery (leader)", leader),
        Measured("recovery (standby)", standby),
        Measured("coordinator", stack.pid("coordinator")),
        Measured("nats-server", nats_child.pid),
        Measured("etcd", etcd_child.pid),
    ]
    if postgres is not None:
        processes.append(Measured("postgresql server", postgres[1], context=True))
    processes += [
        Measured("simulated fleet", simfleet.pid, context=True),
        # (its children are the stack: not counted twice)
        Measured("this benchmark", os.getpid(), context=True, descendants=False),
    ]
    with ReadLoad(stack.apis, clusters, args.api_rate) as load:
        time.sleep(args.warmup)
        stack.alive()
        load.latencies.clear()
        probes_before = probes_total(stack.metrics_port)
        busy_before = machine_busy_seconds()
        wall = sample(processes, seconds=args.seconds, every=args.sample_seconds, alive=stack.alive)
        others = (machine_busy_seconds() - busy_before) / wall - sum(
            p.average(wall) for p in processes
        )
        probes = (probes_total(stack.metrics_port) - probes_before) / wall
    if leader_pid(stack) != leader:
        raise BenchmarkError("the recovery leadership changed during the window")
    return Result(args, crawl_seconds, wall, processes, probes, max(others, 0.0), load)


def measure(args: argparse.Namespace) -> Result:
    with work_directory("footprint-", keep=args.keep) as children:
        if "postgres" not in args.backends:
            return measure_stack(args, children, None)
        with postgres_server() as postgres:
            try:
                return measure_stack(args, children, postgres)
            finally:
                children.close()  # the API lets go of PostgreSQL before it stops


# --- the report -------------------------------------------------------------------------------


def print_processes(result: Result) -> None:
    rows = [
        (
            p.name + (" *" if p.context else ""),
            f"{p.average(result.wall) * 100:.1f} %",
            f"{max(p.windows, default=0.0) * 100:.1f} %",
            f"{p.rss_end / MB:.0f} MB",
            f"{p.rss_peak / MB:.0f} MB",
        )
        for p in result.processes
    ]
    peak = f"CPU peak {result.args.sample_seconds:g} s"
    headers = ("process", "CPU avg", peak, "RSS end", "RSS peak (VmHWM)")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        numbers = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        cells = [row[0].ljust(widths[0]), *numbers]
        print("| " + " | ".join(cells) + " |")
    print("* not a service of the stack: for context (100 % = one core)")


def caveats_of(result: Result, demand: float) -> list[str]:
    """Why this window may not show the steady cost: the machine was busy with other programs,
    or discovery did not keep up (a starved stack does less work, so it looks cheaper)."""
    caveats = []
    if result.others > BUSY_MACHINE:
        caveats.append(f"other programs used {result.others * 100:.0f} % of a core")
    if result.probes_per_second < demand * KEEPING_UP:
        caveats.append(f"discovery probed {result.probes_per_second:.0f}/s of {demand:.0f}/s")
    return caveats


def report(result: Result) -> int:
    args = result.args
    load = result.load
    demand = args.instances / args.poll_seconds
    load_text = (
        f"{args.api_rate:g} req/s to each API ({len(load.latencies)} in the window, "
        f"p50 {percentile(load.latencies, 50) * 1000:.0f} ms, "
        f"p99 {percentile(load.latencies, 99) * 1000:.0f} ms, {load.failed} failed)"
        if args.api_rate > 0
        else "none"
    )
    print_table(
        report_title("service footprint"),
        [
            Figure(
                "instances (clusters x size)",
                f"{args.instances} ({args.instances // args.cluster_size}x{args.cluster_size})",
            ),
            Figure("InstancePollSeconds", f"{args.poll_seconds:g} s"),
            Figure("every API lists every instance after", f"{result.crawl_seconds:.1f} s"),
            Figure("window", f"{result.wall:.1f} s (after {args.warmup:g} s warm-up)"),
            Figure("API read load", load_text),
            Figure(
                "discovery full probes/s", f"{result.probes_per_second:.0f} (demand {demand:.0f})"
            ),
            Figure(f"other load on the {os.cpu_count()} cores", f"{result.others * 100:.0f} %"),
        ],
    )
    print()
    print_processes(result)
    caveats = caveats_of(result, demand)
    if caveats:
        print(f"NOT STEADY: {'; '.join(caveats)}: the figures may understate the load; run again")
    print(
        json.dumps(
            {
                "instances": args.instances,
                "clusters": args.instances // args.cluster_size,
                "poll_seconds": args.poll_seconds,
                "window_seconds": round(result.wall, 1),
                "api_rate_per_api": args.api_rate,
                "probes_per_second": round(result.probes_per_second),
                "other_load_pct": round(result.others * 100, 1),
                "steady": not caveats,
                "services": {p.name: p.figures(result.wall) for p in result.services()},
                "context": {p.name: p.figures(result.wall) for p in result.processes if p.context},
            }
        )
    )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--cluster-size", type=int, default=4, help="1 master + replicas")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="CPU peak window")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="InstancePollSeconds")
    parser.add_argument(
        "--api-rate", type=float, default=50.0, help="requests/s to each API (0: no load)"
    )
    parser.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="topology-api stores, comma-separated: sqlite, postgres (default: both)",
    )
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or any(b not in BACKENDS for b in args.backends):
        parser.error(f"--backends: one or both of {', '.join(BACKENDS)}")
    if args.cluster_size < 1 or args.instances < args.cluster_size:
        parser.error("--instances must be at least --cluster-size, which must be at least 1")
    if args.instances % args.cluster_size:
        parser.error("--instances must be a multiple of --cluster-size")
    if args.seconds <= 0 or args.sample_seconds <= 0 or args.api_rate < 0:
        parser.error("--seconds and --sample-seconds must be positive, --api-rate not negative")
    return args


def main() -> int:
    args = parse_args()
    return run_benchmark("footprint", lambda: measure(args), report)


if __name__ == "__main__":
    sys.exit(main())
