"""How many full probes per second one orchestrator-discovery process sustains, and at what cost.

Starts its own nats-server (JetStream), a simulated fleet of MariaDB clusters
(``tests/harness/simfleet.py``; by default 1,000 clusters of 1 master + 4 replicas = 5,000
instances) and ONE ``orchestrator-discovery`` seeded with the masters only, so it crawls the
replicas itself. Once every instance has an ok snapshot (and a warm-up has passed), it measures
a steady-state window:

* full probes per second: ``orchestrator_discovery_probes_total`` deltas from ``/metrics``
  (the snapshot messages seen on ``orchestrator.v1.snapshot.*`` are counted too);
* discovery's CPU (user + system time over wall time; 100% = one core) and peak RSS (VmHWM);
* probe latency p50/p99, from ``probe.latency_seconds`` of the snapshot messages;
* the age of the oldest snapshot at the end: max over instances of now - ``probe.checked_at``
  of its latest snapshot (about one poll interval when discovery keeps up).

Prints a table; exits 1 if a target is missed, 2 if the benchmark itself could not run.
Every process it starts is stopped on any exit (and killed by the kernel if this one dies).

    uv run --no-sync python benchmarks/discovery_throughput.py [--clusters 1000]
        [--cluster-size 5] [--seconds 60] [--poll-seconds 5] [--sim-processes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import nats
from benchlib import (
    LOOPBACK,
    BenchmarkError,
    Child,
    Children,
    Figure,
    cancel_on_stop_signals,
    cpu_seconds,
    free_port,
    machine_busy_seconds,
    peak_rss_bytes,
    percentile,
    print_table,
    read_metrics,
    report_title,
    run_async_benchmark,
    start_discovery,
    start_nats,
    start_simfleet,
    verdict,
    work_directory,
)
from nats.aio.msg import Msg

PROBES_METRIC = "orchestrator_discovery_probes_total"
KNOWN_METRIC = "orchestrator_discovery_instances_known"

# The first fields of a snapshot message, in the order pydantic writes them.
_SNAPSHOT_HEAD = re.compile(
    rb'"key":"([^"]+)","probe":\{"ok":(true|false),"partial":(?:true|false),'
    rb'"checked_at":"([^"]+)".*?"latency_seconds":([-+0-9.eE]+)'
)


@dataclass
class SnapshotTally:
    """What the snapshot messages say; parsed with one regex (full JSON would cost more CPU)."""

    latest_checked: dict[str, bytes] = field(default_factory=dict)
    # Monotonic arrival of each instance's previous snapshot, and the longest gap seen.
    last_arrival: dict[str, float] = field(default_factory=dict)
    max_gap: float = 0.0
    ok_keys: set[str] = field(default_factory=set)
    messages: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # monotonic, in the window
    recording: bool = False
    unparsed: int = 0

    async def on_message(self, msg: Msg) -> None:
        match = _SNAPSHOT_HEAD.search(msg.data)
        if match is None:
            self.unparsed += 1
            return
        key = match.group(1).decode()
        ok = match.group(2) == b"true"
        now = time.monotonic()
        previous = self.last_arrival.get(key)
        self.last_arrival[key] = now
        self.latest_checked[key] = match.group(3)
        if ok:
            self.ok_keys.add(key)
        if self.recording:
            self.messages += 1
            self.failed += not ok
            self.latencies.append(float(match.group(4)))
            self.arrivals.append(now)
            if previous is not None:
                self.max_gap = max(self.max_gap, now - previous)

    def busiest_second(self) -> int:
        """Most snapshots that arrived within one whole second of the window (load spikes)."""
        if not self.arrivals:
            return 0
        start = self.arrivals[0]
        bins: dict[int, int] = {}
        for arrival in self.arrivals:
            second = int(arrival - start)
            bins[second] = bins.get(second, 0) + 1
        return max(bins.values())

    def oldest_age(self, keys: list[str], now: datetime) -> float:
        ages = []
        for key in keys:
            checked = self.latest_checked.get(key)
            if checked is None:
                return float("inf")
            ages.append((now - datetime.fromisoformat(checked.decode())).total_seconds())
        return max(ages)


def probes_total(metrics: dict[str, float]) -> float:
    return sum(v for k, v in metrics.items() if k.startswith(PROBES_METRIC + "{"))


def _alive(*children: Child) -> None:
    for child in children:
        if not child.is_running():
            raise BenchmarkError(f"{child.name} exited:\n{child.log_tail()}")


async def _metrics(port: int) -> dict[str, float]:
    found = await asyncio.to_thread(read_metrics, port)
    if found is None:
        raise BenchmarkError(f"no /metrics on port {port}")
    return found


async def measure(args: argparse.Namespace, children: Children) -> list[Figure]:
    instances = args.clusters * args.cluster_size
    base, simfleet = start_simfleet(
        children,
        clusters=args.clusters,
        cluster_size=args.cluster_size,
        processes=args.sim_processes,
    )
    nats_url, nats_child = start_nats(children)
    masters = [f"{LOOPBACK}:{base + c * args.cluster_size}" for c in range(args.clusters)]
    all_keys = [f"{LOOPBACK}:{base + i}" for i in range(instances)]
    metrics_port = free_port()
    settings = {
        "DiscoverySeeds": masters,
        "InstancePollSeconds": args.poll_seconds,
        "NATSServers": [nats_url],
        "MySQLTopologyUser": "bench",
        "MySQLTopologyPassword": "bench",
        "DiscoveryMetricsListenAddress": f"{LOOPBACK}:{metrics_port}",
        "DiscoveryMaxConcurrency": args.max_concurrency,
    }
    tally = SnapshotTally()
    nc = await nats.connect(nats_url, name="discovery-throughput")
    try:
        await nc.subscribe("orchestrator.v1.snapshot.*", cb=tally.on_message)
        started = time.monotonic()
        discovery = start_discovery(
            children, settings, log_level=args.log_level, profile_to=args.profile
        )
        print(f"fleet: {instances} instances on ports {base}-{base + instances - 1}; waiting")
        while len(tally.ok_keys) < instances:
            _alive(discovery, simfleet, nats_child)
            if time.monotonic() - started > args.startup_timeout:
                raise BenchmarkError(
                    f"only {len(tally.ok_keys)}/{instances} instances seen ok after "
                    f"{args.startup_timeout:g}s"
                )
            await asyncio.sleep(0.5)
        known = (await _metrics(metrics_port)).get(KNOWN_METRIC, 0)
        crawl_seconds = time.monotonic() - started
        print(f"all {instances} instances known ({known:g} tracked) after {crawl_seconds:.1f}s")
        await asyncio.sleep(args.warmup)
        _alive(discovery, simfleet, nats_child)

        pids = {
            "discovery": discovery.pid,
            "simfleet": simfleet.pid,
            "nats": nats_child.pid,
            "benchmark": os.getpid(),
        }

        def cpu_now() -> dict[str, float]:
            return {
                name: cpu_seconds(pid, descendants=name == "simfleet") for name, pid in pids.items()
            }

        cpu_before = cpu_now()
        busy_before = machine_busy_seconds()
        metrics_before = await _metrics(metrics_port)
        tally.recording = True
        window_start = time.monotonic()
        await asyncio.sleep(args.seconds)
        tally.recording = False
        wall = time.monotonic() - window_start
        metrics_after = await _metrics(metrics_port)
        oldest = tally.oldest_age(all_keys, datetime.now(UTC))
        cpu_after = cpu_now()
        cpu = {name: (cpu_after[name] - cpu_before[name]) / wall for name in pids}
        others = (machine_busy_seconds() - busy_before) / wall - sum(cpu.values())
        peak_rss = peak_rss_bytes(discovery.pid)
        _alive(discovery, simfleet, nats_child)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()

    probes = probes_total(metrics_after) - probes_total(metrics_before)
    rate = probes / wall
    demand = instances / args.poll_seconds
    return [
        Figure("instances (clusters x size)", f"{instances} ({args.clusters}x{args.cluster_size})"),
        Figure("poll interval", f"{args.poll_seconds:g} s"),
        Figure("time to discover all", f"{crawl_seconds:.1f} s"),
        Figure("window", f"{wall:.1f} s"),
        Figure(
            "full probes/s (/metrics)",
            f"{rate:.0f}",
            f">= {args.target_rate:g}",
            rate >= args.target_rate * (1 - args.tolerance),
        ),
        Figure("snapshot messages/s (NATS)", f"{tally.messages / wall:.0f}"),
        Figure("demand: instances / poll", f"{demand:.0f}/s"),
        Figure("busiest second (snapshots)", str(tally.busiest_second())),
        Figure("failed probes in window", str(tally.failed), "0", tally.failed == 0),
        Figure(
            "snapshot messages not understood",
            str(tally.unparsed),
            "0 (else: update _SNAPSHOT_HEAD)",
            tally.unparsed == 0,
        ),
        Figure(
            "discovery CPU (100% = 1 core)",
            f"{cpu['discovery'] * 100:.0f}%",
            "<= 100%",
            cpu["discovery"] <= 1.0,
        ),
        Figure(
            "discovery peak RSS",
            f"{peak_rss / 2**20:.0f} MB",
            "<= 300 MB",
            peak_rss <= 300 * 2**20,
        ),
        Figure("probe latency p50", f"{percentile(tally.latencies, 50) * 1000:.1f} ms"),
        Figure("probe latency p99", f"{percentile(tally.latencies, 99) * 1000:.1f} ms"),
        Figure(
            "oldest snapshot age at end",
            f"{oldest:.1f} s",
            f"<= {args.poll_seconds * 1.5:g} s",
            oldest <= args.poll_seconds * 1.5,
        ),
        Figure(
            "longest gap between snapshots",
            f"{tally.max_gap:.1f} s",
            f"<= {args.poll_seconds * 1.5:g} s",
            tally.max_gap <= args.poll_seconds * 1.5,
        ),
        Figure("simfleet CPU", f"{cpu['simfleet'] * 100:.0f}%"),
        Figure("nats-server CPU", f"{cpu['nats'] * 100:.0f}%"),
        Figure("this benchmark's CPU", f"{cpu['benchmark'] * 100:.0f}%"),
        Figure(
            f"other load on the {os.cpu_count()} cores",
            f"{max(others, 0) * 100:.0f}%",
            "(should be ~0)",
        ),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--cluster-size", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="InstancePollSeconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--max-concurrency", type=int, default=300)
    parser.add_argument("--sim-processes", type=int, default=1)
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--target-rate", type=float, default=1000.0, help="probes/s")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.02,
        help="fraction of the target rate forgiven: with N instances polled every P s the "
        "demand is exactly N/P, and every probe's next start is its last start + P",
    )
    parser.add_argument("--log-level", default="WARNING", help="discovery's log level")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="run discovery under cProfile and write its stats to FILE (slows it down)",
    )
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    cancel_on_stop_signals()
    try:
        with work_directory("discovery-throughput-", keep=args.keep) as children:
            figures = await measure(args, children)
    except BenchmarkError as exc:
        print(f"discovery_throughput: {exc}", file=sys.stderr)
        return 2
    print_table(report_title("discovery throughput"), figures)
    return verdict([f.name for f in figures if f.ok is False])


def main() -> int:
    args = parse_args()
    return run_async_benchmark("discovery_throughput", main_async(args))


if __name__ == "__main__":
    sys.exit(main())
