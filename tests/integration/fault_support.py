"""What the fault scenarios (test_faults_*.py) share: a proxy in front of the master that
every client and replica goes through, a writer that remembers the writes it saw acknowledged,
and a watcher that samples which nodes are writable all along."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from orchestrator_cli.sandbox import Sandbox
from orchestrator_cli.sandbox.config import change_master_sql
from orchestrator_shared.errors import SandboxError
from tests.harness.faultproxy import FaultProxy, Mode


class FaultProxies:
    """Proxies one test opens; every one closed at the end, even on failure."""

    def __init__(self) -> None:
        self.opened: list[FaultProxy] = []

    def __call__(self, host: str, port: int, *, name: str) -> FaultProxy:
        proxy = FaultProxy(host, port, name=name)
        self.opened.append(proxy)
        return proxy

    def close(self) -> None:
        for proxy in self.opened:
            proxy.close()


def replicate_through(sandbox: Sandbox, proxy: FaultProxy, replicas: list[int]) -> None:
    """Point ``replicas`` at ``proxy`` (in front of their master): the network between them
    and their master is the proxy's."""
    for index in replicas:
        sandbox.execute(index, "STOP SLAVE")
        sandbox.execute(index, change_master_sql(proxy.port))
        sandbox.execute(index, "START SLAVE")


def connect_at(sandbox: Sandbox, port: int, index: int) -> pymysql.Connection[Any]:
    """A root session on node ``index`` at ``port`` (its own, or its proxy's), with short
    timeouts (a blackholed server makes a statement fail, not hang)."""
    args = sandbox.connect_args(index)
    return pymysql.connect(
        host=str(args["host"]),
        port=port,
        user=str(args["user"]),
        password=str(args["password"]),
        connect_timeout=2,
        read_timeout=2,
        write_timeout=2,
        autocommit=True,
    )


class Writer:
    """Inserts ``ack-<n>`` rows into node ``index`` at ``port`` (its own, or a proxy's), one
    after the other, until stopped; keeps the notes whose INSERT returned OK (acknowledged to
    the client). Failures (a blackholed or dead master) are retried on a new connection: a
    client that keeps trying."""

    def __init__(self, sandbox: Sandbox, port: int, index: int = 0) -> None:
        self.acknowledged: list[str] = []
        self.failures = 0
        self._sandbox, self._port, self._index = sandbox, port, index
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the writer did not stop"

    def _run(self) -> None:
        n = 0
        conn: pymysql.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = connect_at(self._sandbox, self._port, self._index)
                note = f"ack-{n}"
                n += 1
                with conn.cursor() as cursor:
                    cursor.execute("INSERT INTO sandbox.t (note) VALUES (%s)", (note,))
                self.acknowledged.append(note)
            except pymysql.MySQLError:
                self.failures += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
                self._stop.wait(0.2)
            else:
                self._stop.wait(0.02)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def notes(sandbox: Sandbox, index: int) -> set[str]:
    return {row[0] for row in sandbox.execute(index, "SELECT note FROM sandbox.t")}


@dataclass
class Sample:
    at: float
    writable: frozenset[int]  # nodes with read_only=OFF (asked directly, around any proxy)
    cut_off: frozenset[int]  # nodes no client can reach now (their proxy blackholes)


@dataclass
class WritableWatcher:
    """Samples every node's read_only every 50 ms: the evidence for "never two writable
    masters". A node behind a blackholing proxy is writable but cut off: no client can write
    to it, so it does not count as a second master while it is."""

    sandbox: Sandbox
    proxies: dict[int, FaultProxy] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)

    def __enter__(self) -> WritableWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive(), "the watcher did not stop"

    def _run(self) -> None:
        while not self._stop.is_set():
            cut_off = frozenset(i for i, p in self.proxies.items() if p.mode is Mode.BLACKHOLE)
            writable = frozenset(
                node.index for node in self.sandbox.nodes if self._writable(node.index)
            )
            self.samples.append(Sample(time.monotonic(), writable, cut_off))
            self._stop.wait(0.05)

    def _writable(self, index: int) -> bool:
        try:
            rows = self.sandbox.execute(index, "SELECT @@global.read_only", timeout=1)
        except SandboxError:  # a node down or killed: not writable
            return False
        return not int(rows[0][0])

    def writable_since(self, index: int, since: float) -> float:
        """How long ``index`` stayed writable (and reachable) after ``since``."""
        after = [s for s in self.samples if s.at >= since]
        last = max((s.at for s in after if index in s.writable - s.cut_off), default=since)
        return last - since
