"""What the benchmarks share: child processes that never outlive the run, ports, NATS, etcd,
the simulated fleet, a run's work directory and exit code, the result table.

A benchmark's ``main`` is :func:`run_benchmark` (or, on asyncio, :func:`cancel_on_stop_signals`)
around a measurement inside :func:`work_directory`, then :func:`print_table` under a
:func:`report_title` and :func:`verdict`: so every benchmark stops the same way on SIGTERM or
Ctrl-C, exits 2 when it could not run and 1 when a target was missed, and prints the same table.

Every child (nats-server, the simulated fleet, orchestrator-discovery) is started by
:class:`Children`, which puts it in its own process group, asks the kernel to SIGKILL it if the
benchmark dies (``PR_SET_PDEATHSIG``), and on ``close()`` (always called from a ``finally``)
sends SIGTERM to each group, waits, then SIGKILLs what is left.

``orchestrator-discovery`` is started as the workspace's console script
(``.venv/bin/orchestrator-discovery``), the very program ``uv run --no-sync
orchestrator-discovery`` executes, but without the ``uv`` wrapper process in between: so the PID
the benchmark measures (CPU, RSS) is discovery's own, and the parent-death signal reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import httpx
import nats
import psutil
from nats.aio.msg import Msg

LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999): our thousands of outgoing connections can never
# take a port a server needs, and the servers never collide with them.
PORT_RANGE = range(20000, 32768)
BENCHMARKS_DIR = Path(__file__).resolve().parent
# the simulated fleet is part of the test harness (tests/integration/test_simfleet.py pins it);
# run by path, so the harness package (and what it imports) is not loaded with it
SIMFLEET = BENCHMARKS_DIR.parent / "tests" / "harness" / "simfleet.py"

_handed_out: set[int] = set()

T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """The benchmark could not set up or run (a child failed to start, a timeout...)."""


# --- ports ------------------------------------------------------------------------------------


def is_port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (with SO_REUSEADDR, as servers bind)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    for _ in range(500):
        port = random.choice(PORT_RANGE)
        if port not in _handed_out and is_port_free(port):
            _handed_out.add(port)
            return port
    raise BenchmarkError("no free loopback port")


def free_port_block(count: int) -> int:
    """The first of ``count`` consecutive free ports (for the simulated fleet).

    Scans from a random point (then from the bottom), skipping past any port in use.
    """
    low, high = PORT_RANGE.start, PORT_RANGE.stop
    if count > high - low:
        raise BenchmarkError(f"{count} ports do not fit in {low}-{high - 1}")
    for first in (random.randrange(low, high - count + 1), low):
        base = first
        while base + count <= high:
            taken = next(
                (p for p in range(base, base + count) if p in _handed_out or not is_port_free(p)),
                None,
            )
            if taken is None:
                _handed_out.update(range(base, base + count))
                return base
            base = taken + 1
    raise BenchmarkError(f"no block of {count} free loopback ports in {low}-{high - 1}")


def tcp_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return str(answer.read().decode())
    except (urllib.error.URLError, OSError, TimeoutError):
        return None


# --- child processes --------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the benchmark dies (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_line(self, expected: str, timeout: float) -> None:
        """Read stdout (a pipe) until ``expected`` arrives; BenchmarkError on exit or timeout."""
        stream = self.process.stdout
        assert stream is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchmarkError(f"{self.name} not ready within {timeout:g}s")
            readable, _, _ = select.select([stream], [], [], remaining)
            if readable:
                line = stream.readline()
                if line.strip() == expected:
                    return
                if not line:
                    raise BenchmarkError(f"{self.name} exited:\n{self.log_tail()}")


@dataclass
class Children:
    """The benchmark's child processes; ``close()`` ends every one of them."""

    workdir: Path
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdout_pipe: bool = False,
    ) -> Child:
        log_path = self.workdir / f"{name}.log"
        log: IO[str] = log_path.open("w")
        try:
            process = subprocess.Popen(
                list(command),
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                text=True,
                env={**os.environ, **(env or {})},
                start_new_session=True,  # its own process group: killed as a whole
                # Only the main thread forks children here, so preexec_fn is safe.
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        finally:
            log.close()
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 5.0) -> None:
        """SIGTERM to the child's group, then SIGKILL after ``timeout``; reaped."""
        if child.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(5)
        if child.process.stdout is not None:
            child.process.stdout.close()

    def close(self) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self.children.clear()


# --- servers ----------------------------------------------------------------------------------


def find_nats_server() -> str:
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if found is None:
        raise BenchmarkError("nats-server not found")
    return found


def start_nats(children: Children, timeout: float = 15.0) -> tuple[str, Child]:
    """Our own nats-server with JetStream in the work directory; its URL once healthy."""
    port, monitor = free_port(), free_port()
    store = children.workdir / "jetstream"
    child = children.start(
        "nats-server",
        [
            find_nats_server(),
            "-a", LOOPBACK, "-p", str(port), "-m", str(monitor),
            "-js", "-sd", str(store),
            "--server_name", f"bench-{port}",
        ],
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    health = f"http://{LOOPBACK}:{monitor}/healthz?js-enabled-only=true"
    while time.monotonic() < deadline:
        if not child.is_running():
            raise BenchmarkError(f"nats-server exited:\n{child.log_tail()}")
        if http_get(health) is not None and tcp_accepts(port):
            return f"nats://{LOOPBACK}:{port}", child
        time.sleep(0.1)
    raise BenchmarkError(f"nats-server not healthy within {timeout:g}s")


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


def start_simfleet(
    children: Children,
    *,
    clusters: int,
    cluster_size: int,
    processes: int = 1,
    timeout: float = 60.0,
) -> tuple[int, Child]:
    """The simulated fleet on a block of free ports; its base port once every port listens."""
    base = free_port_block(clusters * cluster_size)
    child = children.start(
        "simfleet",
        [
            sys.executable, str(SIMFLEET),
            "--base-port", str(base),
            "--clusters", str(clusters),
            "--cluster-size", str(cluster_size),
            "--processes", str(processes),
        ],
        stdout_pipe=True,
    )  # fmt: skip
    child.wait_for_line("ready", timeout)
    return base, child


def workspace_executable(name: str, *, missing: str | None = None) -> str:
    """The workspace's console script ``name`` (beside this Python, else on PATH), run
    without the ``uv`` wrapper (see the module docstring); BenchmarkError (``missing``)
    when it is not installed."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return str(script)
    found = shutil.which(name)
    if found is None:
        raise BenchmarkError(missing or f"{name} not installed in this environment")
    return found


def start_discovery(
    children: Children,
    settings: Mapping[str, Any],
    *,
    log_level: str = "INFO",
    profile_to: Path | None = None,
) -> Child:
    """orchestrator-discovery with ``settings`` as its config file.

    With ``profile_to``, it runs under cProfile and writes the stats there when it stops
    (SIGTERM is a clean stop), for ``python -m pstats``.
    """
    config = children.workdir / "orchestrator.conf.json"
    config.write_text(json.dumps(settings, indent=2))
    program = [workspace_executable("orchestrator-discovery")]
    if profile_to is not None:
        program = [sys.executable, "-m", "cProfile", "-o", str(profile_to)]
        program += ["-m", "orchestrator_discovery.main"]
    return children.start(
        "discovery",
        [*program, "--config", str(config)],
        env={"ORCHESTRATOR_LOG_LEVEL": log_level},
    )


# --- listening on the bus ---------------------------------------------------------------------

Handler = Callable[[Msg], Awaitable[None]]


class NatsListener(ABC):
    """Core NATS subscriptions on a background thread with its own event loop, so arrival
    times are taken when the messages arrive, whatever the (synchronous) main thread is doing.

    A subclass says what it listens to (:meth:`subscriptions`) and keeps what arrives, under
    its own lock: the handlers run on the listener's thread.
    """

    def __init__(
        self,
        url: str,
        *,
        client_name: str,
        thread_name: str,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = url
        self._client_name = client_name
        self._connect_options = dict(connect_options or {})
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @abstractmethod
    def subscriptions(self) -> Sequence[tuple[str, Handler]]:
        """The subjects to subscribe to, each with the handler of its messages."""

    def start(self, timeout: float = 10.0) -> None:
        """Connected and subscribed, or BenchmarkError."""
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise BenchmarkError(f"cannot subscribe to NATS at {self._url}: {self._error}")

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        try:
            nc = await nats.connect(self._url, name=self._client_name, **self._connect_options)
        except Exception as exc:  # reported to the main thread by start()
            self._error = exc
            self._ready.set()
            return
        try:
            for subject, handler in self.subscriptions():
                await nc.subscribe(subject, cb=handler)
            await nc.flush()
            self._ready.set()
            await self._stopped.wait()
        finally:
            with contextlib.suppress(Exception):
                await nc.close()


# --- measurements -----------------------------------------------------------------------------

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def read_metrics(port: int) -> dict[str, float] | None:
    """Prometheus text from ``/metrics``: ``{'name{labels}': value}``."""
    text = http_get(f"http://{LOOPBACK}:{port}/metrics")
    if text is None:
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line)
        if match:
            with contextlib.suppress(ValueError):
                values[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return values


def cpu_seconds(pid: int, *, descendants: bool = False) -> float:
    """User + system CPU time of a process (and of its live descendants: simfleet's workers)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *(root.children(recursive=True) if descendants else ())):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (to see what else ran meanwhile)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def peak_rss_bytes(pid: int) -> int:
    """The process's RSS high-water mark (VmHWM), or its current RSS where that is unknown."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of a result table."""

    name: str
    value: str
    target: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return ""
        return "ok" if self.ok else "MISSED"


def print_table(title: str, figures: Sequence[Figure]) -> None:
    widths = [
        max(len(header), *(len(getattr(f, attr)) for f in figures))
        for header, attr in (("measure", "name"), ("value", "value"), ("target", "target"))
    ]
    print(f"\n{title}")
    header = f"| {'measure':<{widths[0]}} | {'value':>{widths[1]}} | {'target':<{widths[2]}} |  |"
    print(header)
    print(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|--|")
    for f in figures:
        print(
            f"| {f.name:<{widths[0]}} | {f.value:>{widths[1]}} | {f.target:<{widths[2]}} "
            f"| {f.verdict} |"
        )


def milliseconds(seconds: float) -> str:
    """``1234 ms``; ``-`` for no value (infinity)."""
    return "-" if seconds == float("inf") else f"{seconds * 1000:.0f} ms"


def report_title(what: str) -> str:
    """A result table's title: what was measured and when (UTC, to the minute)."""
    return f"{what} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"


def verdict(missed: Sequence[str], *, separator: str = ", ") -> int:
    """The exit code after the table: 0, or 1 after a ``MISSED:`` line naming what missed."""
    if missed:
        print(f"\nMISSED: {separator.join(missed)}")
        return 1
    return 0


# --- a run: its work directory, its children, its exit code --------------------------------


def interrupt_on_stop_signals() -> None:
    """SIGTERM, like Ctrl-C, raises KeyboardInterrupt in the main thread, so either stops the
    run through the same ``finally`` blocks (every child stopped, the work directory removed)."""

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)


def cancel_on_stop_signals() -> None:
    """For a benchmark on asyncio: SIGINT or SIGTERM cancel the current (main) task."""
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)


@contextlib.contextmanager
def work_directory(
    prefix: str, *, keep: bool, after_children: Callable[[Path], None] | None = None
) -> Iterator[Children]:
    """A fresh temporary directory and the :class:`Children` started in it. On the way out,
    however it is left: every child is stopped, then ``after_children(directory)`` runs (e.g.
    a sandbox's teardown), then the directory is removed, or kept (and named) with ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    children = Children(workdir)
    try:
        yield children
    finally:
        children.close()
        if after_children is not None:
            after_children(workdir)
        if keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_benchmark(
    name: str,
    measure: Callable[[], T],
    report: Callable[[T], int],
    *,
    errors: tuple[type[Exception], ...] = (BenchmarkError,),
) -> int:
    """A synchronous benchmark's exit code: ``measure()`` (stop signals interrupt it), then
    ``report(result)``'s code. It could not run (one of ``errors``): ``name: <error>`` on
    stderr, exit 2; interrupted: exit 130. Children are stopped by ``measure``'s own
    :func:`work_directory` before either line."""
    interrupt_on_stop_signals()
    try:
        result = measure()
    except errors as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted; everything it started was stopped", file=sys.stderr)
        return 130
    return report(result)


def run_async_benchmark(name: str, main: Coroutine[Any, Any, int]) -> int:
    """An asyncio benchmark's exit code: ``main``'s, or 130 once :func:`cancel_on_stop_signals`
    (or Ctrl-C before it) has interrupted it; ``main`` maps its own errors to exit 2."""
    try:
        return asyncio.run(main)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(f"{name}: interrupted; every child process was stopped", file=sys.stderr)
        return 130


# --- a whole stack under `orchestrator up` ---------------------------------------------------

NATS_LINE = re.compile(r"nats-server with JetStream on (nats://\S+)")
API_LINE = re.compile(r"orchestrator-topology-api on (http://\S+)")


def orchestrator_executable() -> str:
    return workspace_executable(
        "orchestrator", missing="the orchestrator CLI is not installed in this environment"
    )


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, alive: Callable[[], None]
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        alive()
        if time.monotonic() > deadline:
            raise BenchmarkError(f"not within {timeout:g}s: {what}")
        time.sleep(0.05)


def log_match(child: Child, pattern: re.Pattern[str]) -> str | None:
    try:
        text = child.log_path.read_text(errors="replace")
    except OSError:
        return None
    found = pattern.search(text)
    return found.group(1) if found else None


def api_json(http: httpx.Client, path: str) -> Any:
    try:
        answer = http.get(path)
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    try:
        return answer.json()
    except ValueError:
        return None


def leader_ok(http: httpx.Client) -> bool:
    try:
        return http.get("/api/leader-check").status_code == 200
    except httpx.HTTPError:
        return False
