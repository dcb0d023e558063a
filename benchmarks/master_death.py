"""How fast discovery reports a dead master: ``kill -9`` to ``orchestrator.v1.unreachable.<key>``.

A real MariaDB sandbox (``orchestrator_cli.sandbox``: 1 master + 3 replicas with GTID), our own
nats-server and one ``orchestrator-discovery`` seeded with the master only
(``InstancePollSeconds`` 5, master liveness at its defaults: a ping every 0.5 s, 1 s timeout).
For each of R runs:

1. wait until discovery knows and watches the master: an ok snapshot of it with its replicas
   (newer than the last restart), then a few liveness intervals, then a random fraction of one
   (so the kill lands anywhere in the ping cycle);
2. ``kill -9`` the master (``Sandbox.kill(0)``) and take the time just before the signal;
3. take the time the unreachable event for the master arrives on a core NATS subscription to
   ``orchestrator.v1.unreachable.>``: the latency is arrival minus kill (the event's own
   ``detected_at`` gives discovery's detection time, reported alongside);
4. restart the master (``Sandbox.start(0)``) and wait until every replica replicates again.

Reports p50 / p90 / max of the kill-to-event latency; exits 1 if p50 > ``--target-p50``
(0.6 s), 2 if the benchmark itself could not run. Everything it started (sandbox nodes, NATS,
discovery) is stopped on any exit.

NATS runs in a background thread with its own event loop, so the arrival time of an event is
taken when it arrives, even while the main thread is busy with a (blocking) sandbox call. The
sandbox is driven from the main thread only: its nodes' parent-death signal is tied to the
thread that started them.

    uv run --no-sync python benchmarks/master_death.py [--runs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import (
    BenchmarkError,
    Child,
    Children,
    Figure,
    Handler,
    NatsListener,
    free_port,
    free_port_block,
    milliseconds,
    percentile,
    print_table,
    read_metrics,
    report_title,
    run_benchmark,
    start_discovery,
    start_nats,
    verdict,
    wait_until,
    work_directory,
)
from nats.aio.msg import Msg

from orchestrator_cli.sandbox import TOPOLOGY_PASSWORD, TOPOLOGY_USER, Sandbox
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import SandboxError
from orchestrator_shared.instance_key import InstanceKey

# Discovery runs with its defaults for these (a ping every 0.5 s, 1 s timeout).
LIVENESS_INTERVAL = float(Settings.model_fields["MasterLivenessCheckIntervalSeconds"].default)
LIVENESS_TIMEOUT = float(Settings.model_fields["MasterLivenessTimeoutSeconds"].default)
WATCHED_METRIC = "orchestrator_discovery_masters_watched"


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message that arrived, with the wall-clock and monotonic times of its arrival."""

    subject: str
    body: dict[str, Any]
    wall: float
    monotonic: float


class BusListener(NatsListener):
    """Unreachable events (queued) and the master's latest snapshot."""

    def __init__(self, url: str, master_token: str) -> None:
        super().__init__(url, client_name="master-death", thread_name="nats-listener")
        self._snapshot_subject = f"orchestrator.v1.snapshot.{master_token}"
        self.events: queue.Queue[Arrival] = queue.Queue()
        self._lock = threading.Lock()
        self._master_snapshot: Arrival | None = None

    @property
    def master_snapshot(self) -> Arrival | None:
        with self._lock:
            return self._master_snapshot

    def subscriptions(self) -> list[tuple[str, Handler]]:
        return [
            ("orchestrator.v1.unreachable.>", self._on_event),
            (self._snapshot_subject, self._on_snapshot),
        ]

    async def _on_event(self, msg: Msg) -> None:
        self.events.put(_arrival(msg))

    async def _on_snapshot(self, msg: Msg) -> None:
        with self._lock:
            self._master_snapshot = _arrival(msg)


def _arrival(msg: Msg) -> Arrival:
    return Arrival(msg.subject, json.loads(msg.data), time.time(), time.monotonic())


def _parse_time(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True, slots=True)
class Run:
    latency: float  # kill -> event arrival
    detection: float  # kill -> the event's detected_at
    kill_call: float  # how long Sandbox.kill(0) took (SIGKILL and reap)


def measure(args: argparse.Namespace, children: Children, workdir: Path) -> list[Run]:
    base_port = free_port_block(args.nodes)
    print(f"sandbox: {args.nodes} MariaDB nodes on ports {base_port}-{base_port + args.nodes - 1}")
    sandbox = Sandbox.up(
        workdir / "sandbox", nodes=args.nodes, base_port=base_port, parent_death_signal=True
    )
    listener: BusListener | None = None
    try:
        master_key = sandbox.master.key
        replica_count = args.nodes - 1
        nats_url, nats_child = start_nats(children)
        listener = BusListener(nats_url, InstanceKey.parse(master_key).subject_token)
        listener.start()
        metrics_port = free_port()
        discovery = start_discovery(
            children,
            {
                "DiscoverySeeds": [master_key],
                "InstancePollSeconds": args.poll_seconds,
                "NATSServers": [nats_url],
                "MySQLTopologyUser": TOPOLOGY_USER,
                "MySQLTopologyPassword": TOPOLOGY_PASSWORD,
                "DiscoveryMetricsListenAddress": f"127.0.0.1:{metrics_port}",
            },
            log_level=args.log_level,
        )

        def alive(*, also: tuple[Child, ...] = (discovery, nats_child)) -> None:
            for child in also:
                if not child.is_running():
                    raise BenchmarkError(f"{child.name} exited:\n{child.log_tail()}")

        runs: list[Run] = []
        restarted_wall = 0.0
        for number in range(1, args.runs + 1):
            _wait_watched(listener, metrics_port, replica_count, restarted_wall, alive)
            time.sleep(3 * LIVENESS_INTERVAL + random.uniform(0, LIVENESS_INTERVAL))
            _drain(listener.events)
            killed_wall, killed = time.time(), time.monotonic()
            sandbox.kill(0)
            kill_call = time.monotonic() - killed
            event = _wait_event(listener, master_key, timeout=args.event_timeout, alive=alive)
            detection = _parse_time(event.body["detected_at"]) - killed_wall
            runs.append(Run(event.monotonic - killed, detection, kill_call))
            print(
                f"run {number:2d}: event after {runs[-1].latency * 1000:6.0f} ms "
                f"(detected after {detection * 1000:4.0f} ms; kill took {kill_call * 1000:.0f} ms)"
            )
            sandbox.start(0)
            restarted_wall = time.time()
            sandbox.wait_caught_up(timeout=60)
        return runs
    finally:
        if listener is not None:
            listener.stop()
        sandbox.down()


def _wait_watched(
    listener: BusListener,
    metrics_port: int,
    replica_count: int,
    since_wall: float,
    alive: Callable[[], None],
) -> None:
    """An ok snapshot of the master with all its replicas, probed after ``since_wall``."""

    def is_watched() -> bool:
        arrival = listener.master_snapshot
        if arrival is None:
            return False
        probe = arrival.body["probe"]
        if not probe["ok"] or _parse_time(probe["checked_at"]) <= since_wall:
            return False
        if len(arrival.body.get("replica_keys", ())) < replica_count:
            return False
        metrics = read_metrics(metrics_port) or {}
        return metrics.get(WATCHED_METRIC, 0) >= 1

    wait_until(is_watched, timeout=120, what="discovery watches the master", alive=alive)


def _drain(events: queue.Queue[Arrival]) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            events.get_nowait()


def _wait_event(
    listener: BusListener, master_key: str, *, timeout: float, alive: Callable[[], None]
) -> Arrival:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchmarkError(f"no unreachable event for {master_key} within {timeout:g}s")
        try:
            arrival = listener.events.get(timeout=min(remaining, 0.5))
        except queue.Empty:
            alive()
            continue
        if arrival.body.get("key") == master_key:
            return arrival


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=4, help="1 master + N-1 replicas")
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="InstancePollSeconds")
    parser.add_argument("--target-p50", type=float, default=0.6, help="seconds")
    parser.add_argument("--event-timeout", type=float, default=15.0, help="seconds per run")
    parser.add_argument("--log-level", default="WARNING", help="discovery's log level")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.runs < 1:
        parser.error("--nodes must be at least 2 and --runs at least 1")
    return args


def main() -> int:
    args = parse_args()

    def measure_in_work_directory() -> list[Run]:
        with work_directory("master-death-", keep=args.keep) as children:
            return measure(args, children, children.workdir)

    return run_benchmark(
        "master_death",
        measure_in_work_directory,
        lambda runs: report(runs, args),
        errors=(BenchmarkError, SandboxError),
    )


def report(runs: list[Run], args: argparse.Namespace) -> int:
    latencies = [run.latency for run in runs]
    detections = [run.detection for run in runs]
    p50 = percentile(latencies, 50)
    figures = [
        Figure("runs", str(len(runs))),
        Figure(
            "kill -> event p50",
            milliseconds(p50),
            f"<= {args.target_p50 * 1000:.0f} ms",
            p50 <= args.target_p50,
        ),
        Figure("kill -> event p90", milliseconds(percentile(latencies, 90))),
        Figure("kill -> event max", milliseconds(max(latencies))),
        Figure("kill -> detected_at p50", milliseconds(percentile(detections, 50))),
        Figure("kill -> detected_at max", milliseconds(max(detections))),
        Figure(
            "liveness interval / timeout",
            f"{LIVENESS_INTERVAL:g} s / {LIVENESS_TIMEOUT:g} s",
            "defaults",
        ),
    ]
    print_table(report_title("master death"), figures)
    too_slow = f"p50 {milliseconds(p50)} > {args.target_p50 * 1000:.0f} ms"
    return verdict([too_slow] if p50 > args.target_p50 else [])


if __name__ == "__main__":
    sys.exit(main())
