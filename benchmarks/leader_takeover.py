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
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import (
    BenchmarkError,
    Child,
    Children,
    Figure,
    milliseconds,
    percentile,
    print_table,
    report_title,
    run_benchmark,
    start_etcd,
    verdict,
    work_directory,
)

TTL = 3  # the defaults of EtcdLeaseTTLSeconds, EtcdKeepAliveIntervalSeconds, ...
KEEPALIVE = 0.5
REQUEST_TIMEOUT = 1.0


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

    def measure_in_work_directory() -> list[float]:
        with work_directory("leader-takeover-", keep=args.keep) as children:
            return measure(args, children)

    return run_benchmark("leader_takeover", measure_in_work_directory, lambda t: report(t, args))


def report(takeovers: list[float], args: argparse.Namespace) -> int:
    limit = TTL + 1.0
    worst = max(takeovers)
    figures = [
        Figure("runs", str(len(takeovers))),
        Figure("kill -9 -> standby leads p50", milliseconds(percentile(takeovers, 50))),
        Figure("kill -9 -> standby leads p90", milliseconds(percentile(takeovers, 90))),
        Figure(
            "kill -9 -> standby leads max",
            milliseconds(worst),
            f"<= {limit * 1000:.0f} ms (TTL + 1 s)",
            worst <= limit,
        ),
        Figure("min", milliseconds(min(takeovers))),
        Figure(
            "TTL / keep-alive / request timeout",
            f"{TTL} s / {KEEPALIVE:g} s / {REQUEST_TIMEOUT:g} s",
            "defaults",
        ),
        Figure("workers", str(args.workers)),
    ]
    print_table(report_title("leader takeover"), figures)
    too_slow = f"a takeover took {milliseconds(worst)} > {limit * 1000:.0f} ms"
    return verdict([too_slow] if worst > limit else [])


if __name__ == "__main__":
    sys.exit(main())
