"""Graceful master takeover under writes: how long no write is accepted.

One 4-node MariaDB GTID sandbox and ``orchestrator up`` on it (its own nats-server and etcd,
discovery, the coordinator, two recovery workers, topology-api; ``up`` gives the sandbox's
replication user to ``ReplicationCredentialsQuery``). Once the API lists the 4 instances and
a recovery worker leads:

1. a writer thread inserts ``note='takeover <run> <n>'`` into ``sandbox.t`` every 10 ms as
   ``bench``, a user with INSERT and SELECT only (``read_only`` stops it, as it stops an
   application; root would write through it). When an insert fails (read-only, or its session
   killed) it reconnects, trying the designated replica first, then the old master;
2. after 1 s of writes, ``POST /api/graceful-master-takeover-auto/<master>/<designated>``,
   the designated replica being the next node round the ring (0 → 1 → 2 → 3 → 0 ...), so that
   every run starts from a star whose demoted master replicates again (``-auto``);
3. the **write-unavailable window** of the run is, as the writer saw it, the time from its
   last insert acknowledged by the old master to its first acknowledged by the new one (the
   10 ms pace bounds its resolution); the worker's own figure (``WriteUnavailableMillis``: old
   master ``read_only=1`` → new master ``read_only=0``) and the whole takeover's duration
   (the API call, relocating the other replicas included) are reported alongside;
4. at the same time a second writer behaves as an application does (issue 17 §5): it writes
   where ``/api/master/bench`` says (every instance is aliased ``bench`` by
   ``DetectClusterAliasQuery``), inserting every 10 ms, and asks the API again each time an
   insert fails (then retries at once, else at the next tick). Its **client-visible gap** is
   the longest time between two of its acknowledged inserts during the run: how long the
   cluster was unwritable for a client that follows the API;
5. checks, after one more second of writes: the new master is writable and replicates from
   nobody; the three others (the demoted master included) replicate from it; every insert
   either writer had acknowledged is on the new master.

Reports median / max of the window, of the client-visible gap and of the call, and a line per
run; exits 1 if the median window exceeds 0.5 s (issue 6), the median client-visible gap
``--target-client`` (0.08 s, issue 17), or a check failed, 2 if the benchmark could not run.
Everything started is stopped on any exit (``PR_SET_PDEATHSIG`` if the benchmark is killed).

    uv run --no-sync python benchmarks/takeover.py [--runs 10] [--target-client 0.08] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pymysql
from benchlib import (
    API_LINE,
    LOOPBACK,
    BenchmarkError,
    Child,
    Children,
    Figure,
    api_json,
    free_port,
    free_port_block,
    leader_ok,
    log_match,
    milliseconds,
    orchestrator_executable,
    print_table,
    report_title,
    run_benchmark,
    wait_until,
    work_directory,
)

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.errors import SandboxError

NODES = 4
USER, PASSWORD = "bench", "bench_pass"
INTERVAL = 0.01
ALIAS = "bench"


@dataclass(frozen=True, slots=True)
class Ack:
    note: str
    port: int
    at: float  # monotonic


class Writer:
    """Inserts every 10 ms on its own thread; after a failure, reconnects to the first of
    ``targets`` that accepts the next insert."""

    tag = ""  # told apart in the notes: "takeover <run> <tag><n>"

    def __init__(self, ports: list[int]) -> None:
        self.targets = ports
        self.run = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acks: list[Ack] = []
        self.failed = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def candidates(self) -> list[int]:
        """Where to connect after a failure, in order (tried in this tick)."""
        return list(self.targets)

    def _connect(self) -> tuple[pymysql.connections.Connection[Any], int] | None:
        for port in self.candidates():
            with contextlib.suppress(pymysql.MySQLError, OSError):
                conn = pymysql.connect(
                    host=LOOPBACK,
                    port=port,
                    user=USER,
                    password=PASSWORD,
                    autocommit=True,
                    connect_timeout=1,
                    read_timeout=2,
                    write_timeout=2,
                    # no TLS: pymysql's "preferred" mode builds an SSL context on every
                    # connect (~22 ms of CPU here), which would be measured as the stack's
                    ssl_disabled=True,
                )
                return conn, port
        return None

    def _main(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _loop(self) -> None:
        link: tuple[pymysql.connections.Connection[Any], int] | None = None
        n = 0
        due = time.monotonic()
        while not self._stop.is_set():
            tries = 0
            while tries < max(len(self.targets), 2) and not self._stop.is_set():
                tries += 1
                if link is None:
                    link = self._connect()
                    if link is None:
                        break
                conn, port = link
                n += 1
                note = f"takeover {self.run} {self.tag}{n}"
                try:
                    with conn.cursor() as cursor:
                        cursor.execute("INSERT INTO sandbox.t (note) VALUES (%s)", (note,))
                except (pymysql.MySQLError, OSError):
                    self.failed += 1
                    with contextlib.suppress(Exception):
                        conn.close()
                    link = None
                    continue  # at once: the next target may take it
                with self._lock:
                    self._acks.append(Ack(note, port, time.monotonic()))
                break
            due += INTERVAL
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            else:
                due = now
        if link is not None:
            with contextlib.suppress(Exception):
                link[0].close()


class ApiWriter(Writer):
    """An application: writes on the master ``/api/master/<alias>`` names, and asks the API
    again after every failed insert."""

    tag = "api"

    def __init__(self, api: str, alias: str) -> None:
        super().__init__([])
        self._http = httpx.Client(base_url=api, timeout=2.0)
        self._path = f"/api/master/{quote(alias, safe='')}"
        self.lookups = 0

    def candidates(self) -> list[int]:
        self.lookups += 1
        named = api_json(self._http, self._path)
        return [int(named["Key"]["Port"])] if named else []

    def stop(self) -> None:
        super().stop()
        self._http.close()


def longest_gap(acks: list[Ack]) -> float | None:
    """The longest time between two consecutive acknowledged inserts."""
    times = sorted(a.at for a in acks)
    return max((b - a for a, b in itertools.pairwise(times)), default=None)


@dataclass
class Run:
    number: int
    old: int
    new: int
    window: float | None = None  # seconds, as the writer saw it
    worker_ms: float | None = None
    client_gap: float | None = None  # seconds, as the writer following the API saw it
    call: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        window = "-" if self.window is None else f"{self.window * 1000:.0f} ms"
        worker = "-" if self.worker_ms is None else f"{self.worker_ms:.0f} ms"
        client = "-" if self.client_gap is None else f"{self.client_gap * 1000:.0f} ms"
        text = (
            f"run {self.number:2d}: {self.old} -> {self.new}: window {window} "
            f"(worker {worker}), client gap {client}, takeover call {self.call * 1000:.0f} ms"
        )
        return text + ("; " + "; ".join(self.problems) if self.problems else "")


def query(sandbox: Sandbox, index: int, sql: str) -> list[dict[str, Any]]:
    with (
        pymysql.connect(
            **sandbox.connect_args(index),
            connect_timeout=2,
            read_timeout=5,
            cursorclass=pymysql.cursors.DictCursor,
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(sql)
        return list(cursor.fetchall())


def take_over(
    number: int,
    sandbox: Sandbox,
    writers: tuple[Writer, ApiWriter],
    http: httpx.Client,
    *,
    old: int,
    new: int,
) -> Run:
    run = Run(number, sandbox.node(old).port, sandbox.node(new).port)
    writer, client = writers
    writer.run = client.run = number
    writer.targets = [run.new, run.old]
    time.sleep(1.0)
    master, designated = sandbox.node(old).key, sandbox.node(new)
    started = time.monotonic()
    answer = http.post(
        f"/api/graceful-master-takeover-auto/{quote(master, safe=':')}/"
        f"{designated.key.split(':')[0]}/{designated.port}",
        timeout=120,
    )
    run.call = time.monotonic() - started
    if answer.status_code != 200:
        run.problems.append(f"takeover answered {answer.status_code}: {answer.text[:300]}")
        return run
    details = answer.json().get("Details") or {}
    run.worker_ms = details.get("WriteUnavailableMillis")
    if details.get("Notes"):
        run.problems.append(str(details["Notes"]))
    time.sleep(1.0)
    following = [ack for ack in client.acks() if ack.note.startswith(f"takeover {number} ")]
    run.client_gap = longest_gap(following)
    acks = [ack for ack in writer.acks() if ack.note.startswith(f"takeover {number} ")]
    last_old = max((a.at for a in acks if a.port == run.old), default=None)
    first_new = min((a.at for a in acks if a.port == run.new), default=None)
    if last_old is None or first_new is None:
        run.problems.append("the writer did not write on both masters")
    else:
        run.window = first_new - last_old
    _check(sandbox, run, new, acks + following)
    return run


def _check(sandbox: Sandbox, run: Run, new: int, acks: list[Ack]) -> None:
    if query(sandbox, new, "SELECT @@global.read_only AS ro")[0]["ro"]:
        run.problems.append("the new master is read_only")
    if query(sandbox, new, "SHOW SLAVE STATUS"):
        run.problems.append("the new master still replicates")
    for node in sandbox.nodes:
        if node.index == new:
            continue

        def following(index: int = node.index) -> bool:
            rows = query(sandbox, index, "SHOW SLAVE STATUS")
            return bool(rows) and (
                int(rows[0]["Master_Port"]) == run.new
                and rows[0]["Slave_IO_Running"] == "Yes"
                and rows[0]["Slave_SQL_Running"] == "Yes"
            )

        if not _poll(following, 10):
            run.problems.append(f"{node.key} does not replicate from the new master")
    notes = {a.note for a in acks}
    found = {
        str(row["note"])
        for row in query(
            sandbox, new, f"SELECT note FROM sandbox.t WHERE note LIKE 'takeover {run.number} %'"
        )
    }
    lost = notes - found
    if lost:
        run.problems.append(f"{len(lost)} acknowledged inserts missing on the new master")


def _poll(check: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def bench(args: argparse.Namespace, children: Children, workdir: Path) -> list[Run]:
    sandbox = Sandbox.up(
        workdir / "sandbox", nodes=NODES, base_port=free_port_block(NODES), parent_death_signal=True
    )
    sandbox.execute(0, f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
    sandbox.execute(0, f"GRANT INSERT, SELECT ON sandbox.* TO '{USER}'@'%'")
    config = workdir / "orchestrator.conf.json"
    config.write_text(
        json.dumps(
            {
                "ListenAddress": f"{LOOPBACK}:{free_port()}",
                "DetectClusterAliasQuery": f"SELECT '{ALIAS}'",
            }
        )
    )
    up: Child = children.start(
        "up",
        [
            orchestrator_executable(), "up",
            "--config", str(config),
            "--sandbox", str(sandbox.directory),
            "--nodes", str(NODES),
        ],
    )  # fmt: skip

    def alive() -> None:
        if not up.is_running():
            raise BenchmarkError(f"orchestrator up exited:\n{up.log_tail()}")

    api = str(wait_until(lambda: log_match(up, API_LINE), timeout=90, what="API", alive=alive))
    runs: list[Run] = []
    writer = Writer([sandbox.node(0).port])
    client = ApiWriter(api, ALIAS)
    with httpx.Client(base_url=api, timeout=5.0) as http:
        keys = {node.key for node in sandbox.nodes}

        def listed(master: int) -> bool:
            found = api_json(http, f"/api/cluster/{quote(sandbox.node(master).key, safe=':')}")
            valid = {
                f"{i['Key']['Hostname']}:{i['Key']['Port']}"
                for i in found or []
                if i.get("IsLastCheckValid") and i.get("ReplicationDepth", 0) <= 1
            }
            named = api_json(http, f"/api/master/{quote(sandbox.node(master).key, safe=':')}")
            return (
                keys <= valid and bool(named) and named["Key"]["Port"] == sandbox.node(master).port
            )

        wait_until(lambda: listed(0), timeout=60, what="the API lists 4 instances", alive=alive)
        wait_until(lambda: leader_ok(http), timeout=60, what="a worker leads", alive=alive)
        wait_until(
            lambda: bool(api_json(http, f"/api/master/{ALIAS}")),
            timeout=60,
            what=f"the API knows the alias {ALIAS}",
            alive=alive,
        )
        writer.start()
        client.start()
        try:
            for number in range(1, args.runs + 1):
                old, new = (number - 1) % NODES, number % NODES
                run = take_over(number, sandbox, (writer, client), http, old=old, new=new)
                print(run.line(), flush=True)
                runs.append(run)
                if run.problems and run.window is None:
                    break  # the topology is not what the next run needs
                wait_until(
                    functools.partial(listed, new),
                    timeout=30,
                    what="the API shows the new master with its 3 replicas",
                    alive=alive,
                )
            for one in (writer, client):
                if one.error is not None:
                    raise BenchmarkError(f"writer failed: {one.error!r}")
        finally:
            writer.stop()
            client.stop()
    return runs


def summarize(runs: list[Run], args: argparse.Namespace) -> int:
    windows = [r.window for r in runs if r.window is not None]
    median = statistics.median(windows) if windows else float("inf")
    worker = [r.worker_ms for r in runs if r.worker_ms is not None]
    calls = [r.call for r in runs]
    gaps = [r.client_gap for r in runs if r.client_gap is not None]
    gap = statistics.median(gaps) if gaps else float("inf")
    failed = [r for r in runs if r.problems]

    ms = milliseconds
    figures = [
        Figure("takeovers", f"{len(runs)} of {args.runs}", f"{args.runs}", len(runs) == args.runs),
        Figure(
            "write-unavailable window median (writer)",
            ms(median),
            f"<= {args.target_median * 1000:.0f} ms",
            median <= args.target_median,
        ),
        Figure("write-unavailable window max (writer)", ms(max(windows)) if windows else "-"),
        Figure(
            "client-visible gap median (writer following /api/master)",
            ms(gap),
            f"<= {args.target_client * 1000:.0f} ms",
            gap <= args.target_client,
        ),
        Figure("client-visible gap max", ms(max(gaps)) if gaps else "-"),
        Figure(
            "read_only -> writable median / max (worker)",
            f"{statistics.median(worker):.0f} / {max(worker):.0f} ms" if worker else "-",
        ),
        Figure(
            "whole takeover call median / max",
            f"{ms(statistics.median(calls))} / {ms(max(calls))}" if calls else "-",
            f"<= {args.target_call * 1000:.0f} ms",
            bool(calls) and statistics.median(calls) <= args.target_call,
        ),
        Figure(
            "runs with every check passed",
            f"{len(runs) - len(failed)} of {len(runs)}",
            f"{len(runs)}",
            not failed,
        ),
    ]
    print_table(report_title("graceful master takeover"), figures)
    missed = median > args.target_median or gap > args.target_client
    if missed or failed or len(runs) < args.runs:
        print("\nMISSED")
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--target-median", type=float, default=0.5, help="seconds")
    parser.add_argument(
        "--target-client", type=float, default=0.08, help="client-visible gap, seconds"
    )
    parser.add_argument("--target-call", type=float, default=0.3, help="takeover call, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    def sandbox_down(workdir: Path) -> None:
        with contextlib.suppress(SandboxError):
            Sandbox.load(workdir / "sandbox").down()

    def measure() -> list[Run]:
        with work_directory("takeover-", keep=args.keep, after_children=sandbox_down) as children:
            print(f"{args.runs} takeovers on a {NODES}-node sandbox, work dir {children.workdir}")
            return bench(args, children, children.workdir)

    return run_benchmark(
        "takeover",
        measure,
        lambda runs: summarize(runs, args),
        errors=(BenchmarkError, SandboxError, httpx.HTTPError),
    )


if __name__ == "__main__":
    sys.exit(main())
