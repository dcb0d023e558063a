"""How fast a standby recovery worker takes over after ``kill -9`` of the leader.

Our own one-member etcd (as operators would run it, apart from being alone: default raft timing)
and ``--workers`` drill workers (``python -m orchestrator_coordinator.drill``: an Election plus a
guarded "action" every 50 ms), with the default timing settings: lease TTL 3 s, keep-alive every
0.5 s, request timeout 1 s. For each of R runs:

1. wait until every worker has joined and one leads; then a random fraction of a keep-alive
   interval, so the kill lands anywhere in the keep-alive cycle;
2. ``kill -9`` the leader (its lease is still renewed up to that instant) and take the time;
3. take the time of the new leader's ``lead`` record (``time.monotonic()`` in the worker, the
   same clock): takeover = that minus the kill. A takeover counts only with a higher fencing
   token than the killed leader's;
4. restart the killed worker as a standby.

Reports p50 and max; exits 1 if any run exceeds TTL + 1 s, 2 if the benchmark itself could not
run. Everything it started is stopped on any exit.

    uv run --no-sync python benchmarks/leader_takeover.py [--runs 20] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchlib import (
    LOOPBACK,
    BenchmarkError,
    Child,
    Children,
    Figure,
    free_port,
    http_get,
    percentile,
    print_table,
)

TTL = 3  # the defaults of EtcdLeaseTTLSeconds, EtcdKeepAliveIntervalSeconds, ...
KEEPALIVE = 0.5
REQUEST_TIMEOUT = 1.0


def find_etcd() -> str:
    found = shutil.which("etcd")
    if found is None:
        raise BenchmarkError("etcd not found on PATH")
    return found


def start_etcd(children: Children, timeout: float = 15.0) -> str:
    client, peer = free_port(), free_port()
    endpoint = f"http://{LOOPBACK}:{client}"
    child = children.start(
        "etcd",
        [
            find_etcd(), "--name", "bench",
            "--data-dir", str(children.workdir / "etcd"),
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-advertise-peer-urls", f"http://{LOOPBACK}:{peer}",
            "--initial-cluster", f"bench=http://{LOOPBACK}:{peer}",
        ],
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.is_running():
            raise BenchmarkError(f"etcd exited:\n{child.log_tail()}")
        answer = http_get(f"{endpoint}/health")
        if answer is not None and json.loads(answer).get("health") == "true":
            return endpoint
        time.sleep(0.1)
    raise BenchmarkError(f"etcd not healthy within {timeout:g}s")


def read_records(path: Path) -> list[dict[str, Any]]:
    records = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def wait_for(path: Path, predicate: Any, *, within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        for record in read_records(path):
            if predicate(record):
                return record
        if time.monotonic() >= deadline:
            raise BenchmarkError(f"{what}: nothing within {within:g} s")
        time.sleep(0.005)


def start_worker(
    children: Children, name: str, endpoint: str, records: Path, *, after: float
) -> Child:
    child = children.start(
        name,
        [
            sys.executable, "-m", "orchestrator_coordinator.drill",
            "--endpoints", endpoint, "--records", str(records), "--id", name,
            "--ttl", str(TTL), "--keepalive", str(KEEPALIVE),
            "--request-timeout", str(REQUEST_TIMEOUT), "--action-interval", "0.05",
        ],
    )  # fmt: skip
    wait_for(
        records,
        lambda r: r["kind"] == "joined" and r["worker"] == name and r["mono"] >= after,
        within=20,
        what=f"{name} joining",
    )
    return child


def measure(args: argparse.Namespace, children: Children) -> list[float]:
    endpoint = start_etcd(children)
    records = children.workdir / "records.jsonl"
    workers: dict[str, Child] = {}
    for index in range(args.workers):
        name = f"worker{index}"
        workers[name] = start_worker(children, name, endpoint, records, after=0)
    lead = wait_for(records, lambda r: r["kind"] == "lead", within=15, what="first leader")
    takeovers: list[float] = []
    for run in range(1, args.runs + 1):
        time.sleep(1.0 + random.uniform(0, KEEPALIVE))
        leader = workers[lead["worker"]]
        killed_at = time.monotonic()
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait()
        previous = lead
        lead = wait_for(
            records,
            lambda r, p=previous, t=killed_at: (
                r["kind"] == "lead" and r["token"] > p["token"] and r["mono"] >= t
            ),
            within=TTL + 10,
            what=f"run {run}: takeover",
        )
        takeover = lead["mono"] - killed_at
        takeovers.append(takeover)
        print(f"run {run:2d}: {previous['worker']} killed, {lead['worker']} leads after "
              f"{takeover * 1000:.0f} ms (token {lead['token']})", flush=True)  # fmt: skip
        children.children.remove(leader)
        name = previous["worker"]
        workers[name] = start_worker(children, name, endpoint, records, after=time.monotonic())
    return takeovers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="recovery workers (2 or more)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    if args.workers < 2 or args.runs < 1:
        parser.error("--workers must be at least 2 and --runs at least 1")
    return args


def main() -> int:
    args = parse_args()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="leader-takeover-"))
    children = Children(workdir)
    try:
        takeovers = measure(args, children)
    except BenchmarkError as exc:
        print(f"leader_takeover: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("leader_takeover: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    finally:
        children.close()
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    limit = TTL + 1.0
    worst = max(takeovers)
    figures = [
        Figure("runs", str(len(takeovers))),
        Figure("kill -9 -> standby leads p50", f"{percentile(takeovers, 50) * 1000:.0f} ms"),
        Figure("kill -9 -> standby leads p90", f"{percentile(takeovers, 90) * 1000:.0f} ms"),
        Figure(
            "kill -9 -> standby leads max",
            f"{worst * 1000:.0f} ms",
            f"<= {limit * 1000:.0f} ms (TTL + 1 s)",
            worst <= limit,
        ),
        Figure("min", f"{min(takeovers) * 1000:.0f} ms"),
        Figure(
            "TTL / keep-alive / request timeout",
            f"{TTL} s / {KEEPALIVE:g} s / {REQUEST_TIMEOUT:g} s",
            "defaults",
        ),
        Figure("workers", str(args.workers)),
    ]
    print_table(f"leader takeover ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", figures)
    if worst > limit:
        print(f"\nMISSED: a takeover took {worst * 1000:.0f} ms > {limit * 1000:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
