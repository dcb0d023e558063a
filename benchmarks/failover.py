"""Master failover through the whole stack: ``kill -9`` of the master to the first insert
accepted by the new master.

For each of R runs, on a fresh stack and a fresh sandbox:

1. a 4-node MariaDB sandbox (``orchestrator_cli.sandbox``: 1 master + 3 replicas, GTID;
   with ``--semi-sync`` semi-sync master and replica on every node), built by the benchmark
   with ``parent_death_signal`` (``orchestrator up`` cannot build a semi-sync sandbox, so the
   benchmark builds it in both modes and ``up`` reuses the running one);
2. ``orchestrator up --sandbox DIR --config FILE`` (the workspace's console script, no ``uv``
   in between): its own nats-server and etcd, discovery, the coordinator, two recovery workers
   and topology-api, all at default settings; the config file names only a free
   ``ListenAddress``. ``up`` recovers every cluster (``RecoverMasterClusterFilters`` "*");
3. once the API lists the 4 instances, all answering, and ``/api/leader-check`` answers 200 (a
   recovery worker leads), the cluster gets the alias ``bench``
   (``/api/set-cluster-alias``) and a writer thread starts: it asks
   ``GET /api/master/bench`` for the master, connects to it (PyMySQL, a new connection
   whenever an insert fails) and inserts ``note='bench <run> <n>'`` into ``sandbox.t`` every
   10 ms, remembering each acknowledged id and the server it went to. The alias follows the
   master after a recovery (topology-api moves it on ``completed``), which is what an
   application asking orchestrator for "the master of my cluster" does;
4. after 1.5 s of writes plus a random fraction of the master liveness interval (so the kill
   lands anywhere in the ping cycle): ``kill -9`` of the master (``Sandbox.kill(0)``), the
   time taken just before the signal;
5. the failover time is the kill to the first insert acknowledged by a different server. The
   recovery events (``orchestrator.v1.recovery.<cluster>.<phase>``, a core NATS subscription on
   a background thread) give the kill to ``detected`` / ``started`` / ``promoted`` /
   ``completed`` arrival times, discovery's ``orchestrator.v1.unreachable.<master>`` the kill to
   the master reported unreachable, and the writer the kill to the first API answer naming the
   new master; these show where the time goes. The stack's own account of it is in the events
   too: ``data.phases`` of the last event of the recovery (``completed``) gives how long each
   stretch took as the services measured it (``detect``, ``confirm``, ``plan``, ``promote``,
   ``repoint``; docs/recovery.md), reported next to the client-side figures;
6. checks, after one more second of writes: the successor of the ``completed`` event is the
   server the writer found; every surviving replica replicates from it (``SHOW SLAVE STATUS``:
   ``Master_Port``, IO and SQL threads ``Yes``) and has applied the writer's last insert; every
   acknowledged insert is on the new master with its id (with ``--semi-sync`` a missing one
   fails the run; without it, asynchronous replication may lose some: counted, reported).

``--sigstop``: the master hangs instead (SIGSTOP: its sockets stay open, it answers nothing)
on a sandbox started with MariaDB's default replication timeouts (``slave_net_timeout`` 60 s,
heartbeat 30 s), as real fleets run. Before the hang the run waits until the recovery leader
has applied the managed heartbeat (``ManageReplicaHeartbeat``) to every replica, and reports
how long that took; the writer gives up on a statement after 0.2 s (a hung master would
otherwise hold it for its read timeout). The time measured is SIGSTOP to the first insert
accepted by the new master. After the checks the old master gets SIGCONT and is written to at
once, as an application user (no ``READ_ONLY ADMIN``), on a connection opened before the hang
and on new ones, until it refuses: writes accepted there after the promotion are counted (the
target is 0; docs/recovery.md, "Hung master", says why one can slip in);
the time from SIGCONT to the first write refused is reported. (The writer also gives up
connecting after 0.2 s: a hung master accepts the TCP connection and never answers.)
Targets: median 2.0 s, max 3.0 s.

Reports median / max / min of the failover time and a line per run; exits 1 if the median
exceeds 1.0 s, the worst run 2.0 s, or a check failed (a run whose failover did not happen
counts as failed), 2 if the benchmark itself could not run. Everything it started (the sandbox
nodes, ``orchestrator up`` and what ``up`` started) is stopped on any exit, Ctrl-C and SIGTERM
included; the kernel kills them if the benchmark is killed (``PR_SET_PDEATHSIG``).

    uv run --no-sync python benchmarks/failover.py [--runs 10] [--semi-sync] [--sigstop] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pymysql
import pymysql.cursors
from benchlib import (
    API_LINE,
    LOOPBACK,
    NATS_LINE,
    BenchmarkError,
    Child,
    Children,
    Figure,
    Handler,
    NatsListener,
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
    verdict,
    wait_until,
    work_directory,
)
from nats.aio.msg import Msg

from orchestrator_cli.sandbox import Sandbox
from orchestrator_shared.config import Settings
from orchestrator_shared.errors import SandboxError
from orchestrator_shared.events import TimedPhase

NODES = 4
APP_USER, APP_PASSWORD = "app", "app-pw"  # --sigstop: an application user (no READ_ONLY ADMIN)
SIGSTOP_STATEMENT_TIMEOUT = 0.2  # --sigstop: the writer's read timeout, seconds
ALIAS = "bench"
LIVENESS_INTERVAL = float(Settings.model_fields["MasterLivenessCheckIntervalSeconds"].default)
UNREACHABLE = "unreachable"  # discovery's orchestrator.v1.unreachable.<key> event
PHASES = (UNREACHABLE, "detected", "started", "promoted", "completed")
TIMED = tuple(phase.value for phase in TimedPhase)  # the stack's own phase times (ms)


# --- recovery events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    phase: str
    data: dict[str, Any]
    monotonic: float


class EventListener(NatsListener):
    """``orchestrator.v1.recovery.>`` and ``orchestrator.v1.unreachable.>``, each with its
    arrival time."""

    def __init__(self, url: str) -> None:
        async def quiet(exc: Exception) -> None:
            """Bus errors (nats-server stopped with the stack) are not the benchmark's."""

        super().__init__(
            url,
            client_name="failover-benchmark",
            thread_name="recovery-events",
            connect_options={"error_cb": quiet, "max_reconnect_attempts": 3},
        )
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []

    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def first(self, phase: str) -> Arrival | None:
        return next((a for a in self.arrivals() if a.phase == phase), None)

    def subscriptions(self) -> list[tuple[str, Handler]]:
        return [
            ("orchestrator.v1.recovery.>", self._on_event),
            ("orchestrator.v1.unreachable.>", self._on_unreachable),
        ]

    async def _on_event(self, msg: Msg) -> None:
        arrived = time.monotonic()
        try:
            body = json.loads(msg.data)
            phase = str(body["type"]).rsplit(".", 1)[-1]
            data = dict(body.get("data") or {})
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self._arrivals.append(Arrival(phase, data, arrived))

    async def _on_unreachable(self, msg: Msg) -> None:
        arrived = time.monotonic()
        try:
            body = dict(json.loads(msg.data))
        except (ValueError, TypeError):
            return
        with self._lock:
            self._arrivals.append(Arrival(UNREACHABLE, body, arrived))


# --- the writer -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    n: int
    note: str
    row_id: int
    port: int
    at: float  # monotonic, when the insert was acknowledged


class Writer:
    """Inserts a row every ``interval`` into the master the API names, on its own thread."""

    def __init__(
        self,
        api: str,
        run: int,
        connect_args: dict[str, Any],
        interval: float = 0.01,
        *,
        statement_timeout: float = 2.0,
    ) -> None:
        self._statement_timeout = statement_timeout
        self._api = api
        self._run_number = run
        self._connect_args = connect_args  # host, user, password (the port comes from the API)
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._acks: list[Ack] = []
        self.failed_inserts = 0
        self.api_questions = 0
        self.first_named: dict[int, float] = {}  # port -> first time the API named it master
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def failure(self) -> BaseException | None:
        return self.error

    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    def _ask_master(self, http: httpx.Client) -> int | None:
        self.api_questions += 1
        try:
            answer = http.get(f"/api/master/{ALIAS}")
            if answer.status_code != 200:
                return None
            port = int(answer.json()["Key"]["Port"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        self.first_named.setdefault(port, time.monotonic())
        return port

    def _main(self) -> None:
        try:
            with httpx.Client(base_url=self._api, timeout=1.0) as http:
                self._loop(http)
        except BaseException as exc:  # reported by the main thread
            self.error = exc

    def _loop(self, http: httpx.Client) -> None:
        conn: pymysql.connections.Connection[Any] | None = None
        port = 0
        n = 0
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                if conn is None:
                    found = self._ask_master(http)
                    if found is not None:
                        port = found
                        with contextlib.suppress(pymysql.MySQLError, OSError):
                            conn = pymysql.connect(
                                **self._connect_args,
                                port=port,
                                autocommit=True,
                                connect_timeout=min(1.0, self._statement_timeout),
                                read_timeout=self._statement_timeout,
                                write_timeout=self._statement_timeout,
                            )
                if conn is not None:
                    n += 1
                    note = f"bench {self._run_number} {n}"
                    try:
                        with conn.cursor() as cursor:
                            cursor.execute("INSERT INTO sandbox.t (note) VALUES (%s)", (note,))
                            row_id = int(cursor.lastrowid)
                        ack = Ack(n, note, row_id, port, time.monotonic())
                        with self._lock:
                            self._acks.append(ack)
                    except (pymysql.MySQLError, OSError):
                        self.failed_inserts += 1
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
                due += self._interval
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    due = now  # behind (an outage): no burst to catch up
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    number: int
    failover: float | None = None  # kill -> first insert acknowledged by the new master
    phases: dict[str, float] = field(default_factory=dict)  # kill -> event arrival
    timed: dict[str, float] = field(default_factory=dict)  # the events' own phase times, ms
    api_names_new: float | None = None  # kill -> first API answer naming the new master
    old_port: int = 0
    successor: str = ""
    acked: int = 0
    acked_on_old: int = 0
    lost: int = 0
    failed_inserts: int = 0
    semi_sync: str = ""  # with --semi-sync: the old master's counters, the new master's state
    managed_after: float | None = None  # --sigstop: stack ready -> heartbeat on every replica
    fenced_after: float | None = None  # --sigstop: SIGCONT -> old master seen read_only
    written_after_wake: int = 0  # --sigstop: writes the old master accepted after SIGCONT
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failover is not None and not self.problems

    def line(self) -> str:
        def ms(value: float | None) -> str:
            return "    -" if value is None else f"{value * 1000:5.0f}"

        head = (
            f"run {self.number:2d}: "
            + ("NO FAILOVER" if self.failover is None else f"{ms(self.failover)} ms")
            + " | unreachable "
            + ms(self.phases.get(UNREACHABLE))
            + " detected "
            + ms(self.phases.get("detected"))
            + " promoted "
            + ms(self.phases.get("promoted"))
            + " completed "
            + ms(self.phases.get("completed"))
            + " API names new "
            + ms(self.api_names_new)
            + " | "
            + " ".join(f"{name} {self.timed[name]:.0f}" for name in TIMED if name in self.timed)
            + f" | {self.successor or '?'} | acked {self.acked} ({self.acked_on_old} on the old"
            f" master), lost {self.lost}"
        )
        if self.semi_sync:
            head += f" | semi-sync: {self.semi_sync}"
        if self.managed_after is not None:
            head += (
                f" | heartbeat managed after {self.managed_after:.1f}s; SIGCONT -> read_only"
                f" {ms(self.fenced_after).strip()} ms, {self.written_after_wake} writes after wake"
            )
        if self.problems:
            head += " | " + "; ".join(self.problems)
        return head


def _query(args: dict[str, Any], sql: str) -> list[dict[str, Any]]:
    with (
        pymysql.connect(
            **args, connect_timeout=2, read_timeout=5, cursorclass=pymysql.cursors.DictCursor
        ) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(sql)
        return list(cursor.fetchall())


def _try_query(args: dict[str, Any], sql: str) -> list[dict[str, Any]] | None:
    try:
        return _query(args, sql)
    except (pymysql.MySQLError, OSError):
        return None


def run_once(number: int, args: argparse.Namespace, children: Children, workdir: Path) -> Run:
    run = Run(number)
    run_dir = workdir / f"run{number:02d}"
    run_dir.mkdir()
    base_port = free_port_block(NODES)
    sandbox = Sandbox.up(
        run_dir / "sandbox",
        nodes=NODES,
        base_port=base_port,
        semi_sync=args.semi_sync,
        server_defaults=args.sigstop,
        parent_death_signal=True,
    )
    up: Child | None = None
    held: pymysql.connections.Connection[Any] | None = None
    listener: EventListener | None = None
    writer: Writer | None = None
    try:
        api_port = free_port()
        config = run_dir / "orchestrator.conf.json"
        settings: dict[str, Any] = {"ListenAddress": f"{LOOPBACK}:{api_port}"}
        if args.detect_alias:
            settings["DetectClusterAliasQuery"] = f"SELECT '{ALIAS}'"
        config.write_text(json.dumps(settings, indent=2))
        up = children.start(
            f"run{number:02d}-up",
            [
                orchestrator_executable(), "up",
                "--config", str(config),
                "--sandbox", str(sandbox.directory),
                "--nodes", str(NODES),
            ],
        )  # fmt: skip
        started = time.monotonic()
        up_child = up

        def alive() -> None:
            if not up_child.is_running():
                raise BenchmarkError(f"orchestrator up exited:\n{up_child.log_tail()}")

        nats_url = wait_until(
            lambda: log_match(up_child, NATS_LINE), timeout=60, what="NATS URL", alive=alive
        )
        listener = EventListener(str(nats_url))
        listener.start()
        api = str(
            wait_until(
                lambda: log_match(up_child, API_LINE), timeout=90, what="API URL", alive=alive
            )
        )
        master = sandbox.master
        keys = {node.key for node in sandbox.nodes}
        with httpx.Client(base_url=api, timeout=2.0) as http:

            def all_answering() -> bool:
                found = api_json(http, f"/api/cluster/{quote(master.key, safe=':')}")
                if not isinstance(found, list):
                    return False
                seen = {
                    f"{i['Key']['Hostname']}:{i['Key']['Port']}"
                    for i in found
                    if i.get("IsLastCheckValid")
                }
                return keys <= seen

            wait_until(all_answering, timeout=60, what="the API lists 4 instances", alive=alive)
            wait_until(
                lambda: leader_ok(http), timeout=60, what="a recovery worker leads", alive=alive
            )
            if not args.detect_alias:
                alias = api_json(
                    http, f"/api/set-cluster-alias/{quote(master.key, safe=':')}?alias={ALIAS}"
                )
                if alias is None:
                    raise BenchmarkError("set-cluster-alias failed")

            def alias_names_master() -> bool:
                found = api_json(http, f"/api/master/{ALIAS}")
                return isinstance(found, dict) and found["Key"]["Port"] == master.port

            wait_until(
                alias_names_master, timeout=30, what="the alias names the master", alive=alive
            )
        ready = time.monotonic() - started
        if args.sigstop:
            run.managed_after = _wait_heartbeat_managed(sandbox, alive) - started
            sandbox.execute(0, f"CREATE USER '{APP_USER}'@'%' IDENTIFIED BY '{APP_PASSWORD}'")
            sandbox.execute(0, f"GRANT ALL ON sandbox.* TO '{APP_USER}'@'%'")
            held = pymysql.connect(
                **_app_args(sandbox, 0), autocommit=True, connect_timeout=1, read_timeout=2
            )
        connect = {k: v for k, v in sandbox.connect_args(0).items() if k != "port"}
        run.old_port = master.port
        baseline = {
            node.index: _semi_sync_status(sandbox.connect_args(node.index))
            for node in sandbox.nodes
            if args.semi_sync
        }
        writer = Writer(
            api, number, connect, statement_timeout=SIGSTOP_STATEMENT_TIMEOUT if args.sigstop else 2
        )
        writer.start()
        wait_until(
            lambda: len(writer.acks()) >= 20 or writer.error is not None,
            timeout=30,
            what="the writer's first inserts",
            alive=alive,
        )
        if writer.error is not None:
            raise BenchmarkError(f"writer failed: {writer.error!r}")
        time.sleep(1.5 + random.uniform(0, LIVENESS_INTERVAL))
        if args.semi_sync:
            old = _semi_sync_status(sandbox.connect_args(0))
            yes, no = _tx_since(baseline[0], old)
            run.semi_sync = (
                f"old master {old.get('status', '?')} with {old.get('clients', '?')} clients, "
                f"{yes} tx acknowledged by a replica, {no} not"
            )
            if old.get("status") != "ON":
                run.problems.append("semi-sync not ON on the master before the kill")

        killed = time.monotonic()
        if args.sigstop:
            sandbox.hang(0)
        else:
            sandbox.kill(0)

        def new_master_ack() -> Ack | None:
            return next((a for a in writer.acks() if a.port != master.port and a.at > killed), None)

        def failed_event() -> Arrival | None:
            return next((a for a in listener.arrivals() if a.phase in ("failed", "blocked")), None)

        deadline = killed + args.failover_timeout
        first: Ack | None = None
        while time.monotonic() < deadline:
            first = new_master_ack()
            if first is not None or failed_event() is not None or writer.error is not None:
                break
            alive()
            time.sleep(0.01)
        if first is not None:
            run.failover = first.at - killed
            time.sleep(1.0)  # more writes on the new master, for the replication check
        writer.stop()
        if writer.failure() is not None:
            run.problems.append(f"writer failed: {writer.failure()!r}")
        completed = None
        with contextlib.suppress(BenchmarkError):
            completed = wait_until(
                lambda: listener.first("completed") or failed_event(),
                timeout=10 if first is not None else 1,
                what="completed",
                alive=alive,
            )
        for arrival in listener.arrivals():
            if arrival.monotonic < killed or (
                arrival.phase == UNREACHABLE and arrival.data.get("key") != master.key
            ):
                continue
            run.phases.setdefault(arrival.phase, arrival.monotonic - killed)
        run.timed = timed_phases(listener.arrivals(), killed)
        bad = failed_event()
        if bad is not None:
            run.problems.append(f"{bad.phase}: {bad.data.get('reason', '')}")
        if first is None:
            run.problems.append(f"no insert on a new master within {args.failover_timeout:g}s")
        acks = writer.acks()
        run.acked = len(acks)
        run.acked_on_old = sum(1 for a in acks if a.port == master.port)
        run.failed_inserts = writer.failed_inserts
        if first is not None:
            run.api_names_new = writer.first_named.get(first.port, killed) - killed
        if completed is not None and completed.phase == "completed":
            run.successor = str(completed.data.get("successor", ""))
            _check(run, sandbox, acks, first, args=args, baseline=baseline)
        elif first is not None:
            run.problems.append("no completed event")
        if args.sigstop and held is not None:
            _wake_and_check(run, sandbox, held)
        print(f"{run.line()}   (stack ready in {ready:.1f}s)", flush=True)
        return run
    finally:
        if args.sigstop:
            with contextlib.suppress(SandboxError):
                sandbox.resume(0)  # never leave a stopped mariadbd behind
        if held is not None:
            with contextlib.suppress(Exception):
                held.close()
        if writer is not None:
            writer.stop()
        if listener is not None:
            listener.stop()
        if up is not None:
            children.stop(up, timeout=30)
            children.children.remove(up)
        sandbox.down()
        if not args.keep:
            shutil.rmtree(run_dir / "sandbox", ignore_errors=True)


def _wait_heartbeat_managed(
    sandbox: Sandbox, alive: Callable[[], None], timeout: float = 60.0
) -> float:
    """Until every replica reports the managed heartbeat (``slave_net_timeout`` 1, period
    0.5, the defaults of ``ReplicaNetTimeoutSeconds``); when (monotonic)."""

    def managed() -> bool:
        for node in sandbox.nodes[1:]:
            timeout_now = sandbox.execute(node.index, "SELECT @@global.slave_net_timeout")
            period = sandbox.execute(node.index, "SHOW GLOBAL STATUS LIKE 'Slave_heartbeat_period'")
            if int(timeout_now[0][0]) != 1 or float(period[0][1]) != 0.5:
                return False
        return True

    wait_until(managed, timeout=timeout, what="the managed heartbeat on every replica", alive=alive)
    return time.monotonic()


def _app_args(sandbox: Sandbox, index: int) -> dict[str, Any]:
    args = dict(sandbox.connect_args(index))
    return {**args, "user": APP_USER, "password": APP_PASSWORD}


def _wake_and_check(run: Run, sandbox: Sandbox, held: pymysql.connections.Connection[Any]) -> None:
    """SIGCONT the old master and write to it at once, on the connection opened before the
    hang and on new ones, until it refuses; count what it accepted and time the fence."""
    sandbox.resume(0)
    woke = time.monotonic()
    connections: list[pymysql.connections.Connection[Any] | None] = [held]
    deadline = woke + 5.0
    while time.monotonic() < deadline and connections:
        conn = connections.pop()
        if conn is None:
            try:
                conn = pymysql.connect(
                    **_app_args(sandbox, 0), autocommit=True, connect_timeout=1, read_timeout=1
                )
            except (pymysql.MySQLError, OSError):
                connections.append(None)
                continue
        try:
            with conn.cursor() as cursor:
                cursor.execute("INSERT INTO sandbox.t (note) VALUES ('after wake')")
            run.written_after_wake += 1
            connections.append(conn)
        except (pymysql.MySQLError, OSError) as exc:
            with contextlib.suppress(Exception):
                conn.close()
            if "read-only" in str(exc):
                run.fenced_after = time.monotonic() - woke  # the first write refused
                break
            connections.append(None)  # killed by the fence: a new connection, as an app would

    def read_only() -> bool:
        try:  # (the fence kills client connections, a new one of ours included)
            return bool(int(sandbox.execute(0, "SELECT @@global.read_only")[0][0]))
        except SandboxError:
            return False

    if run.fenced_after is None or not _poll(read_only, 5.0):
        run.problems.append("the old master did not refuse writes within 5 s of SIGCONT")


def timed_phases(arrivals: list[Arrival], killed: float) -> dict[str, float]:
    """The phase times (ms) of the last recovery event after the kill that carries them."""
    timed: dict[str, float] = {}
    for arrival in arrivals:
        phases = arrival.data.get("phases") if arrival.phase != UNREACHABLE else None
        if arrival.monotonic >= killed and isinstance(phases, dict):
            timed = {str(k): float(v) for k, v in phases.items() if isinstance(v, int | float)}
    return timed


def _check(
    run: Run,
    sandbox: Sandbox,
    acks: list[Ack],
    first: Ack | None,
    *,
    args: argparse.Namespace,
    baseline: dict[int, dict[str, str]],
) -> None:
    """The successor is the writer's new server; the others replicate from it and have the
    last insert; every acknowledged insert is on it."""
    nodes = {node.key: node for node in sandbox.nodes}
    successor = nodes.get(run.successor)
    if successor is None:
        run.problems.append(f"successor {run.successor!r} is not a sandbox node")
        return
    if first is not None and first.port != successor.port:
        run.problems.append(f"the writer wrote to port {first.port}, not to the successor")
    new_args = sandbox.connect_args(successor.index)
    last = acks[-1] if acks else None
    for node in sandbox.nodes:
        if node.index in (0, successor.index):
            continue
        replica_args = sandbox.connect_args(node.index)

        def replicating(replica_args: dict[str, Any] = replica_args) -> bool:
            rows = _try_query(replica_args, "SHOW SLAVE STATUS")
            return bool(
                rows
                and int(rows[0]["Master_Port"]) == successor.port
                and rows[0]["Slave_IO_Running"] == "Yes"
                and rows[0]["Slave_SQL_Running"] == "Yes"
            )

        if not _poll(replicating, 10):
            status = _try_query(replica_args, "SHOW SLAVE STATUS") or [{}]
            state = {k: status[0].get(k) for k in ("Master_Port", "Slave_IO_Running",
                                                   "Slave_SQL_Running", "Last_Error")}  # fmt: skip
            run.problems.append(f"{node.key} not replicating from {successor.key}: {state}")
            continue
        if last is not None and last.port == successor.port:
            sql = f"SELECT COUNT(*) AS n FROM sandbox.t WHERE id = {last.row_id}"

            def has_last(replica_args: dict[str, Any] = replica_args, sql: str = sql) -> bool:
                rows = _try_query(replica_args, sql)
                return bool(rows and int(rows[0]["n"]) == 1)

            if not _poll(has_last, 10):
                run.problems.append(f"{node.key} has not applied the last insert")
    if args.semi_sync:
        new = _semi_sync_status(new_args)
        # (its no_tx also counts what it applied as a replica: only yes_tx tells)
        yes, _ = _tx_since(baseline[successor.index], new)
        run.semi_sync += (
            f"; new master {new.get('status', '?')} with {new.get('clients', '?')} clients, "
            f"{yes} tx acknowledged"
        )
    rows = _try_query(
        new_args, f"SELECT id, note FROM sandbox.t WHERE note LIKE 'bench {run.number} %'"
    )
    if rows is None:
        run.problems.append("cannot read sandbox.t on the new master")
        return
    present = {str(row["note"]): int(row["id"]) for row in rows}
    missing = [a for a in acks if present.get(a.note) != a.row_id]
    run.lost = len(missing)
    if missing and args.semi_sync:
        run.problems.append(
            f"{len(missing)} acknowledged inserts missing on the new master "
            f"(first: {missing[0].note}, id {missing[0].row_id})"
        )


def _semi_sync_status(args: dict[str, Any]) -> dict[str, str]:
    """``Rpl_semi_sync_master_*`` status of a node, without the prefix (empty if unreadable)."""
    rows = _try_query(args, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'") or []
    prefix = "rpl_semi_sync_master_"
    return {
        str(row["Variable_name"]).lower().removeprefix(prefix): str(row["Value"]) for row in rows
    }


def _tx_since(before: dict[str, str], after: dict[str, str]) -> tuple[str, str]:
    """Transactions acknowledged by a semi-sync replica (``yes_tx``) and not (``no_tx``)
    between two readings of a node's status, as text ('?' when unreadable)."""

    def delta(name: str) -> str:
        try:
            return str(int(after[name]) - int(before[name]))
        except (KeyError, ValueError):
            return "?"

    return delta("yes_tx"), delta("no_tx")


def _poll(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--semi-sync", action="store_true", help="semi-sync on every node")
    parser.add_argument(
        "--target-median", type=float, default=None, help="s (0.20; 2.0 with --sigstop)"
    )
    parser.add_argument(
        "--target-max", type=float, default=None, help="s (0.35; 3.0 with --sigstop)"
    )
    parser.add_argument(
        "--failover-timeout", type=float, default=30.0, help="seconds per run before giving up"
    )
    parser.add_argument(
        "--detect-alias",
        action="store_true",
        help=f"alias the cluster by DetectClusterAliasQuery (SELECT '{ALIAS}') on every "
        "instance instead of set-cluster-alias",
    )
    parser.add_argument(
        "--target-api",
        type=float,
        default=1.0,
        help="seconds: every run's kill -> the API names the new master by alias",
    )
    parser.add_argument(
        "--sigstop",
        action="store_true",
        help="SIGSTOP the master (MariaDB's default timeouts) instead of kill -9; SIGCONT it "
        "after the checks and check that it refuses writes",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.target_median is None:
        args.target_median = 2.0 if args.sigstop else 0.20
    if args.target_max is None:
        args.target_max = 3.0 if args.sigstop else 0.35
    if args.sigstop and args.target_api == 1.0:
        args.target_api = 3.0
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def summarize(runs: list[Run], args: argparse.Namespace) -> int:
    times = [run.failover for run in runs if run.failover is not None]
    no_failover = len(runs) - len(times)
    median = statistics.median(times) if times else float("inf")
    worst = max(times) if times and not no_failover else float("inf")

    ms = milliseconds
    cause = "SIGSTOP" if args.sigstop else "kill"

    def phase_figures(name: str, values: list[float]) -> list[Figure]:
        if not values:
            return [Figure(f"{cause} -> {name} median / max", "-")]
        return [
            Figure(
                f"{cause} -> {name} median / max",
                f"{ms(statistics.median(values))} / {ms(max(values))}",
            )
        ]

    failed_checks = [run for run in runs if run.problems]
    figures = [
        Figure("runs", f"{len(runs)}" + (" (semi-sync)" if args.semi_sync else " (async)")),
        Figure(
            f"{cause} -> insert on new master median",
            ms(median),
            f"<= {args.target_median * 1000:.0f} ms",
            median <= args.target_median,
        ),
        Figure(
            f"{cause} -> insert on new master max",
            ms(worst),
            f"<= {args.target_max * 1000:.0f} ms",
            worst <= args.target_max,
        ),
        Figure(f"{cause} -> insert on new master min", ms(min(times)) if times else "-"),
    ]
    for phase in PHASES:
        figures += phase_figures(
            f"`{phase}`", [run.phases[phase] for run in runs if phase in run.phases]
        )
    named = [r.api_names_new for r in runs if r.api_names_new is not None]
    figures += phase_figures("API names new master", named)
    for name in TIMED:
        values = [run.timed[name] / 1000 for run in runs if name in run.timed]
        value = f"{ms(statistics.median(values))} / {ms(max(values))}" if values else "-"
        figures.append(Figure(f"phase `{name}` (the stack's own) median / max", value))
    named_in_time = sum(1 for value in named if value <= args.target_api)
    figures.append(
        Figure(
            f"runs whose API named the new master within {args.target_api:g} s",
            f"{named_in_time} of {len(runs)}",
            f"{len(runs)}",
            named_in_time == len(runs),
        )
    )
    if args.sigstop:
        managed = [r.managed_after for r in runs if r.managed_after is not None]
        fenced = [r.fenced_after for r in runs if r.fenced_after is not None]
        figures += [
            Figure(
                "stack start -> heartbeat managed on every replica median / max",
                f"{statistics.median(managed):.1f} / {max(managed):.1f} s" if managed else "-",
            ),
            Figure(
                "SIGCONT -> first write refused median / max",
                f"{ms(statistics.median(fenced))} / {ms(max(fenced))}" if fenced else "-",
            ),
            Figure(
                "writes the old master accepted after SIGCONT",
                str(sum(r.written_after_wake for r in runs)),
                "0",
                not any(r.written_after_wake for r in runs),
            ),
        ]
    lost = sum(run.lost for run in runs)
    figures += [
        Figure(
            "acknowledged inserts lost",
            f"{lost} of {sum(run.acked for run in runs)}",
            "0" if args.semi_sync else "",
            (lost == 0) if args.semi_sync else None,
        ),
        Figure(
            "runs with every check passed",
            f"{len(runs) - len(failed_checks)} of {len(runs)}",
            f"{len(runs)}",
            not failed_checks,
        ),
    ]
    print_table(report_title("master failover"), figures)
    missed = []
    if median > args.target_median:
        missed.append(f"median {ms(median)} > {args.target_median * 1000:.0f} ms")
    if worst > args.target_max:
        missed.append(f"max {ms(worst)} > {args.target_max * 1000:.0f} ms")
    if failed_checks:
        missed.append(f"checks failed in runs {', '.join(str(r.number) for r in failed_checks)}")
    woken_writes = sum(run.written_after_wake for run in runs)
    if woken_writes:
        missed.append(f"the woken old master accepted {woken_writes} writes")
    if named_in_time < len(runs):
        missed.append(f"the API named the new master late in {len(runs) - named_in_time} runs")
    return verdict(missed, separator="; ")


def main() -> int:
    args = parse_args()

    def measure() -> list[Run]:
        with work_directory("failover-", keep=args.keep) as children:
            runs: list[Run] = []
            mode = "semi-sync" if args.semi_sync else "asynchronous"
            mode += " replication" + (
                ", SIGSTOP of the master, MariaDB's default timeouts" if args.sigstop else ""
            )
            print(f"{args.runs} runs, {NODES}-node sandbox ({mode}), work dir {children.workdir}")
            for number in range(1, args.runs + 1):
                runs.append(run_once(number, args, children, children.workdir))
            return runs

    return run_benchmark(
        "failover",
        measure,
        lambda runs: summarize(runs, args),
        errors=(BenchmarkError, SandboxError),
    )


if __name__ == "__main__":
    sys.exit(main())
