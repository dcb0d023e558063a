"""Server binaries run as child processes of the test session, and the no-orphan guarantees.

A ``ManagedProcess`` is one server (nats-server, one etcd member, one PostgreSQL postmaster):
free loopback ports chosen once, a temporary work directory (data + ``server.log``), its own
process group, and controls a test uses to break it on purpose::

    start()   spawn and wait until ready (the subclass's probe), else ServerStartError + log tail
    stop()    graceful signal, wait, SIGKILL fallback (SIGCONT first when hung)
    kill()    SIGKILL to the whole process group, reaped
    hang()    SIGSTOP to the group (the ports stay open, nothing answers)
    resume()  SIGCONT to the group
    restart() start again with the SAME ports and work directory, so clients reconnect
    close()   kill and delete the work directory; idempotent

No orphans, by three layers:

1. every child gets ``PR_SET_PDEATHSIG=SIGKILL`` (Linux), so the kernel kills it when the test
   session dies, even by SIGKILL. The signal fires when the *thread* that forked the child
   exits, so all children are forked by one harness thread that lives as long as the session;
2. every started server is in a registry, and ``atexit`` closes whatever is still open;
3. ``tests/conftest.py`` fails the session if a server was left open after the last test.

Errors::

    HarnessError              the harness could not do what a test asked
    ├── ServerStartError      a server exited or did not get ready; the message ends with its log
    │   └── PortInUseError    ... because another program took one of its ports
    └── BackendUnavailable    neither the server binary nor a Docker engine is available
"""

from __future__ import annotations

import abc
import atexit
import concurrent.futures
import contextlib
import ctypes
import enum
import http.client
import os
import pwd
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Protocol, Self, TypeVar

import psutil

KEEP_DIRS_ENV = "ORCHESTRATOR_TEST_KEEP_DIRS"
"""Set to 1 to keep the work directories (data + server.log) of closed servers."""


class HarnessError(Exception):
    """The test harness could not do what a test asked."""


class ServerStartError(HarnessError):
    """A server exited, or did not get ready in time. The message ends with its log tail."""


class PortInUseError(ServerStartError):
    """A server could not bind one of its ports; starting it again on fresh ports may work."""


class BackendUnavailable(HarnessError):
    """Neither the server binary nor a reachable Docker engine; the message says what to install."""


class ProcessState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    HUNG = "hung"
    STOPPED = "stopped"
    CLOSED = "closed"


# --- the registry behind the session safety net ---------------------------------------------


class Disposable(Protocol):
    def close(self) -> None: ...


_registry: dict[int, Disposable] = {}
_registry_lock = threading.Lock()


def register(server: Disposable) -> None:
    with _registry_lock:
        _registry[id(server)] = server


def unregister(server: Disposable) -> None:
    with _registry_lock:
        _registry.pop(id(server), None)


def open_servers() -> list[Disposable]:
    """Servers (processes and containers) started and not closed yet."""
    with _registry_lock:
        return list(_registry.values())


def close_all() -> list[str]:
    """Close every server still open (kills it); return their descriptions."""
    closed = []
    for server in open_servers():
        closed.append(repr(server))
        try:
            server.close()
        finally:
            unregister(server)
    return closed


atexit.register(close_all)


# --- spawning -------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
# One long-lived thread forks every child: PR_SET_PDEATHSIG fires when the forking thread ends.
_spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="harness-spawn")


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    libc = _libc
    if libc is None:
        return None
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:  # runs in the child between fork and exec: no allocation-heavy work
        libc.prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), sigkill)

    return preexec


def _credentials(run_as: str | None) -> tuple[int | None, int | None, list[int] | None]:
    """(uid, gid, supplementary groups) for Popen: switch only when we are root."""
    if run_as is None or os.geteuid() != 0:
        return None, None, None
    entry = pwd.getpwnam(run_as)
    return entry.pw_uid, entry.pw_gid, []


def spawn(
    argv: Sequence[str],
    *,
    log: IO[bytes],
    cwd: Path,
    env: dict[str, str],
    run_as: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (own process group), output to ``log``, dying with us."""

    uid, gid, groups = _credentials(run_as)

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            # Only prctl() and getppid() run in the child, after CPython's post-fork reset.
            preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509
            user=uid,
            group=gid,
            extra_groups=groups,
        )

    return _spawner.submit(popen).result()


def run_once(argv: Sequence[str], *, log: IO[bytes], cwd: Path, run_as: str | None) -> int:
    """Run a short setup command (``initdb``) to completion as ``run_as``; its exit code."""
    process = spawn(argv, log=log, cwd=cwd, env=dict(os.environ), run_as=run_as)
    return process.wait()


def chown_to(path: Path, run_as: str | None) -> None:
    """Give ``path`` to ``run_as`` when we are root (the server will run as that user)."""
    if run_as is None or os.geteuid() != 0:
        return
    entry = pwd.getpwnam(run_as)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def find_binary(name: str, extra_dirs: Iterable[str] = ()) -> Path | None:
    """``name`` on PATH, else in the sbin directories or ``extra_dirs``; None when absent."""
    found = shutil.which(name)
    if found:
        return Path(found)
    for directory in (*extra_dirs, "/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


# --- readiness probes -----------------------------------------------------------------------

_no_proxy_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, *, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """Status and body of a GET, or None when nothing answered (proxies ignored)."""
    try:
        with _no_proxy_opener.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()
    except (OSError, http.client.HTTPException):
        return None


def metric_samples(url: str, prefix: str) -> dict[str, float]:
    """The samples named ``prefix...`` on the Prometheus ``/metrics`` at ``url``, keyed by name
    with labels as exposed (``name{label="value",...}``)."""
    answer = http_get(url)
    assert answer is not None and answer[0] == 200, (url, answer)
    values = {}
    for line in answer[1].decode().splitlines():
        if line.startswith(prefix):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def tcp_accepts(host: str, port: int, *, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def mysql_greets(port: int, *, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    """Whether a MySQL/MariaDB server on ``port`` sends its protocol-10 handshake (a server
    still starting, or refusing us, sends an error packet instead)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            header = sock.recv(5)
    except OSError:
        return False
    return len(header) == 5 and header[4] == 10


def is_gone(pid: int) -> bool:
    """The process does not exist any more (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: Iterable[int], *, timeout: float = 5.0) -> list[int]:
    """Wait until every pid is gone; return those still alive after ``timeout``."""
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        remaining = [pid for pid in remaining if not is_gone(pid)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.02)


# --- the managed process --------------------------------------------------------------------

PORT_IN_USE_MARKERS = ("address already in use",)


class ManagedProcess(abc.ABC):
    """One server binary run as a child of the test session (see the module docstring)."""

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    ready_timeout: ClassVar[float] = 30.0
    stop_timeout: ClassVar[float] = 10.0

    def __init__(self, *, name: str, run_as: str | None = None) -> None:
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"orch-{name}-"))
        self.log_path = self.workdir / "server.log"
        self.run_as = run_as if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None
        self._state = ProcessState.NEW
        self._starts = 0
        register(self)  # from here on it owns a directory: close() it

    # subclasses say how to run the server and how to tell it is ready

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the server on this object's ports and work directory."""

    @abc.abstractmethod
    def probe(self) -> bool:
        """One readiness check, without waiting: True when the server serves requests."""

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:  # noqa: B027 (optional hook)
        """Called before the first start (``initdb`` and the like)."""

    def after_exit(self) -> None:  # noqa: B027 (optional hook)
        """Called by ``close()`` once no process of the server is left (release OS resources)."""

    # state

    @property
    def state(self) -> ProcessState:
        if self._state in (ProcessState.RUNNING, ProcessState.HUNG) and not self._is_alive():
            self._state = ProcessState.STOPPED  # it exited by itself (crash, failed start)
        return self._state

    @property
    def is_running(self) -> bool:
        """The process exists (a hung process is running: it holds its ports)."""
        return self.state in (ProcessState.RUNNING, ProcessState.HUNG)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None and self._is_alive() else None

    def pids(self) -> list[int]:
        """The server's process and all its descendants (PostgreSQL backends, ...)."""
        return [process.pid for process in self._processes()]

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.state.value} pid={self.pid}>"

    # controls

    def start(self, *, wait: bool = True) -> None:
        state = self.state
        if state is ProcessState.CLOSED:
            raise HarnessError(f"{self!r} is closed")
        if state in (ProcessState.RUNNING, ProcessState.HUNG):
            raise HarnessError(f"{self!r} is already running")
        if state is ProcessState.NEW:
            self.prepare()
        self._starts += 1
        argv = self.command()
        with self.log_path.open("ab") as log:
            log.write(f"=== harness: start #{self._starts}: {' '.join(argv)}\n".encode())
            log.flush()
            self._process = spawn(
                argv, log=log, cwd=self.workdir, env=self.environment(), run_as=self.run_as
            )
        self._state = ProcessState.RUNNING
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the probe passes; ServerStartError (process killed) if it never does."""
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                self._mark_stopped()
                code = None if process is None else process.returncode
                raise self._start_error(f"exited with code {code} before it was ready")
            if self.state is ProcessState.RUNNING and self.probe():
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise self._start_error(f"was not ready within {limit:.0f} s (killed)")
            time.sleep(0.05)

    def stop(self, *, timeout: float | None = None) -> None:
        """Graceful stop (``stop_signal``); SIGKILL to the group if it does not exit in time."""
        process = self._process
        if process is None or not self.is_running:
            self._mark_stopped()
            return
        group = self._processes()
        if self._state is ProcessState.HUNG:
            self._signal_group(signal.SIGCONT)
        process.send_signal(self.stop_signal)
        try:
            process.wait(self.stop_timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            process.wait()
        self._reap_group(group)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        process = self._process
        if process is None or not self.is_running:
            self._mark_stopped()
            return
        group = self._processes()
        self._signal_group(signal.SIGKILL)
        process.wait()
        self._reap_group(group)

    def hang(self) -> None:
        """SIGSTOP the group: connections stay open, nothing answers (a frozen host)."""
        self._require_running()
        self._signal_group(signal.SIGSTOP)
        self._state = ProcessState.HUNG

    def resume(self) -> None:
        self._require_running()
        self._signal_group(signal.SIGCONT)
        self._state = ProcessState.RUNNING

    def restart(self, *, wait: bool = True) -> None:
        """Stop if running, then start on the same ports with the same data."""
        if self.is_running:
            self.stop()
        self.start(wait=wait)

    def close(self) -> None:
        """Kill the server and delete its work directory. Safe to call twice."""
        if self._state is ProcessState.CLOSED:
            return
        try:
            self.kill()
            self.after_exit()
        finally:
            self._state = ProcessState.CLOSED
            unregister(self)
            if os.environ.get(KEEP_DIRS_ENV) != "1":
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # internals

    def _is_alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _require_running(self) -> None:
        if not self.is_running:
            raise HarnessError(f"{self!r} is not running")

    def _mark_stopped(self) -> None:
        if self._state in (ProcessState.RUNNING, ProcessState.HUNG):
            self._state = ProcessState.STOPPED

    def _signal_group(self, sig: signal.Signals) -> None:
        """Signal the process group; only while the leader is unreaped (alive or zombie)."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, sig)

    def _processes(self) -> list[psutil.Process]:
        """The server's processes as psutil handles (they refuse to signal a reused pid)."""
        pid = self.pid
        if pid is None:
            return []
        try:
            leader = psutil.Process(pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def _reap_group(self, group: Sequence[psutil.Process]) -> None:
        """After the leader was reaped: SIGKILL what is left of ``group``, wait until it is gone.

        No ``killpg`` here: once the leader is reaped its pid (the group id) may be reused.
        """
        for process in group:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        survivors = wait_gone(process.pid for process in group)
        if survivors:
            raise HarnessError(f"{self!r}: processes {survivors} survived SIGKILL")
        self._mark_stopped()

    def _start_error(self, reason: str) -> ServerStartError:
        tail = self.log_tail()
        message = f"{self.name} {reason}\n--- last lines of {self.log_path} ---\n{tail}"
        if any(marker in tail.lower() for marker in PORT_IN_USE_MARKERS):
            return PortInUseError(message)
        return ServerStartError(message)


class Startable(Protocol):
    def start(self) -> None: ...
    def close(self) -> None: ...


StartableT = TypeVar("StartableT", bound=Startable)


def start_with_fresh_ports(factory: Callable[[], StartableT], *, attempts: int = 3) -> StartableT:
    """Build a server with ``factory`` (which picks fresh ports) and start it.

    When another program took a port in the meantime, close it and try again with a new one.
    On any other failure the server is closed and the error propagates.
    """
    for attempt in range(1, attempts + 1):
        server = factory()
        try:
            server.start()
        except PortInUseError:
            server.close()
            if attempt == attempts:
                raise
            continue
        except BaseException:
            server.close()
            raise
        return server
    raise HarnessError("attempts must be at least 1")
