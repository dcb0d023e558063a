"""How long the web UI's drop check takes on a 200-instance cluster (issue 11).

While an operator drags an instance on the cluster page, the page asks ``/api/can-relocate``
which instances it may be dropped on; the active recovery worker answers by reading every
server of the cluster (concurrently, once) and applying ``relocate``'s checks
(:class:`orchestrator_recovery.operations.drop_checks.DropChecks`). This benchmark runs that worker
code against a simulated cluster of a master and 199 replicas (``tests/harness/simfleet.py``: real
sockets, the MySQL wire protocol) and reports each call's time: the drag has to feel immediate.

Usage::

    uv run --no-sync python benchmarks/drop_checks.py [--size 200] [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchlib import Children, Figure, percentile, print_table, start_simfleet

from orchestrator_recovery.mysql import MySQLAccess
from orchestrator_recovery.operations.drop_checks import DropChecks
from orchestrator_shared.bus import CommandRequest
from orchestrator_shared.instance_key import InstanceKey

TARGET_SECONDS = 1.0  # "well under a second" for the page's drop marks


async def measure(base: int, size: int, runs: int) -> list[float]:
    keys = [InstanceKey("127.0.0.1", base + member) for member in range(size)]
    checks = DropChecks(access=MySQLAccess(user="bench", password="bench", connect_timeout=1.0))
    replica = keys[1]
    request = CommandRequest(
        operation="can-relocate",
        instance=str(replica),
        arguments={"targets": ",".join(str(key) for key in keys if key != replica)},
    )
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        reply = await checks.can_relocate(request)
        timings.append(time.perf_counter() - started)
        allowed = sum(1 for verdict in reply.details if verdict["Allowed"])
        if allowed != size - 1:  # the master and every sibling
            raise SystemExit(f"expected {size - 1} allowed targets, got {allowed}")
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200, help="instances in the cluster")
    parser.add_argument("--runs", type=int, default=10, help="calls measured")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="orch-bench-drop-") as workdir:
        children = Children(Path(workdir))
        try:
            base, _ = start_simfleet(children, clusters=1, cluster_size=args.size)
            timings = asyncio.run(measure(base, args.size, args.runs))
        finally:
            children.close()
    median = statistics.median(timings)
    print_table(
        f"can-relocate over a {args.size}-instance simulated cluster, {args.runs} calls",
        [
            Figure("median", f"{median * 1000:.0f} ms", f"< {TARGET_SECONDS:.0f} s", median < 1),
            Figure("p90", f"{percentile(timings, 90) * 1000:.0f} ms"),
            Figure("max", f"{max(timings) * 1000:.0f} ms"),
        ],
    )
    return 0 if median < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
