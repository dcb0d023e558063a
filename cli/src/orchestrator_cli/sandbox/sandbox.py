"""A local MariaDB replication sandbox: N ``mariadbd`` on 127.0.0.1, node 0 the master.

``Sandbox.up`` copies a cached template datadir per node, starts every node at once, creates
the users and the ``sandbox`` database on the master, attaches the replicas with GTID and
returns when all of them replicate and have caught up. ``sandbox.json`` in the sandbox
directory records what was built (ports, pids, files) so that another process can
``Sandbox.load`` it, e.g. ``orchestrator sandbox down`` after ``orchestrator sandbox up``.

A Galera sandbox (``galera=N``) makes nodes ``0..N-1`` one Galera cluster, all writable, and
the other nodes async GTID replicas of node 0 (see :mod:`orchestrator_cli.sandbox.galera`).
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import time
from pathlib import Path
from types import TracebackType

from orchestrator_cli.sandbox import galera as galera_nodes
from orchestrator_cli.sandbox import manifest, replication
from orchestrator_cli.sandbox.client import NodeSession, Row
from orchestrator_cli.sandbox.config import (
    HOST,
    PASSWORDS,
    NodeLayout,
    SandboxOptions,
    SandboxTLS,
    node_layouts,
    render_my_cnf,
    socket_dir,
)
from orchestrator_cli.sandbox.process import NodeProcesses, ProcessState, spawn
from orchestrator_cli.sandbox.status import probe, render_tree
from orchestrator_cli.sandbox.template import (
    copy_template,
    ensure_template,
    find_binaries,
    tail,
)
from orchestrator_cli.sandbox.tls import check_files
from orchestrator_shared.errors import SandboxError

_POLL_S = 0.05
START_TIMEOUT_S = 60.0
DOWN_GRACE_S = 5.0
STOP_GRACE_S = 30.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class SandboxNode:
    """One node as the sandbox last saw it (``pid`` is None when it is not running)."""

    index: int
    port: int
    server_id: int
    pid: int | None
    datadir: Path
    socket: Path
    config_file: Path
    error_log: Path
    source_index: int | None
    galera: bool = False

    @property
    def key(self) -> str:
        return f"{HOST}:{self.port}"


class Sandbox:
    """A running (or stopped) sandbox. Build with :meth:`up`, reopen with :meth:`load`."""

    def __init__(
        self,
        *,
        directory: Path,
        options: SandboxOptions,
        mariadbd: Path,
        version: str,
        layouts: list[NodeLayout],
        pids: list[int | None],
        parent_death_signal: bool,
    ) -> None:
        self.directory = directory
        self.options = options
        self.version = version
        self.parent_death_signal = parent_death_signal
        self._mariadbd = mariadbd
        self._layouts = layouts
        self._pids = pids
        self._processes = NodeProcesses()
        self._log_offsets = [0] * len(layouts)  # error log size when each node was last started

    # ---- building and loading -------------------------------------------------------------

    @classmethod
    def up(
        cls,
        directory: Path,
        *,
        nodes: int = 4,
        base_port: int,
        chain: bool = False,
        semi_sync: bool = False,
        tls: SandboxTLS | None = None,
        galera: int = 0,
        server_defaults: bool = False,
        parent_death_signal: bool = False,
        timeout: float = START_TIMEOUT_S,
    ) -> Sandbox:
        """Build and start a sandbox in ``directory``; return once every replica caught up.

        ``tls``: every node serves TLS with these files and the replicas replicate over
        verified TLS (checked before anything starts). ``galera``: nodes ``0..galera-1`` are
        one Galera cluster and the others async replicas of node 0; ``up`` returns once every
        Galera node is Synced. ``server_defaults``: MariaDB's own ``slave_net_timeout`` and
        heartbeat instead of the sandbox's short ones. ``parent_death_signal`` makes every
        ``mariadbd`` get SIGKILL when the calling process dies (test fixtures: a killed
        pytest leaves no orphans); without it the nodes outlive the caller (the CLI). Raises
        :class:`SandboxError` (nothing left running) on failure.
        """
        options = SandboxOptions(
            nodes=nodes,
            base_port=base_port,
            chain=chain,
            semi_sync=semi_sync,
            tls=tls,
            galera=galera,
            server_defaults=server_defaults,
        )
        if tls is not None:
            check_files(tls)
        if galera:
            galera_nodes.check_prerequisites()
        binaries = find_binaries()
        directory = directory.resolve()
        layouts = node_layouts(directory, options)
        _prepare_directory(directory, layouts, options)
        template = ensure_template(binaries)
        sandbox = cls(
            directory=directory,
            options=options,
            mariadbd=binaries.mariadbd,
            version=binaries.version,
            layouts=layouts,
            pids=[None] * options.nodes,
            parent_death_signal=parent_death_signal,
        )
        sandbox._save()  # first, so that a failed `up` can be retried in the same directory
        try:
            sandbox._lay_out(template)
            sandbox._start_all(timeout)
        except BaseException:
            sandbox.down()
            raise
        return sandbox

    @classmethod
    def load(cls, directory: Path) -> Sandbox:
        """The sandbox recorded in ``directory/sandbox.json`` (its nodes may or may not run)."""
        recorded = manifest.read(directory.resolve())
        return cls(
            directory=recorded.directory,
            options=recorded.options,
            mariadbd=recorded.mariadbd,
            version=recorded.version,
            layouts=recorded.layouts,
            pids=recorded.pids,
            parent_death_signal=False,
        )

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down()

    # ---- what it is -----------------------------------------------------------------------

    @property
    def tls(self) -> SandboxTLS | None:
        """The files the nodes serve TLS with; None for a sandbox without TLS."""
        return self.options.tls

    @property
    def nodes(self) -> list[SandboxNode]:
        return [self.node(index) for index in range(len(self._layouts))]

    @property
    def master(self) -> SandboxNode:
        """Node 0: the master as built (a later failover does not change this)."""
        return self.node(0)

    def node(self, index: int) -> SandboxNode:
        layout = self._layout(index)
        pid = self._pids[index]
        return SandboxNode(
            index=index,
            port=layout.port,
            server_id=layout.server_id,
            pid=pid if self._processes.is_alive(pid, layout.config_file) else None,
            datadir=layout.datadir,
            socket=layout.socket,
            config_file=layout.config_file,
            error_log=layout.error_log,
            source_index=self.options.source_index(index),
            galera=self.options.is_galera(index),
        )

    @property
    def galera_nodes(self) -> list[SandboxNode]:
        """The Galera cluster's nodes (none for a plain sandbox)."""
        return [self.node(index) for index in range(self.options.galera)]

    def galera_status(self, index: int) -> dict[str, str]:
        """Galera node ``index``'s ``wsrep_*`` state (``wsrep_local_state_comment``,
        ``wsrep_cluster_size``, ``wsrep_cluster_status``, ``wsrep_ready``...)."""
        if not self.options.is_galera(self._layout(index).index):
            raise SandboxError(f"node {index} is not a Galera node")
        return galera_nodes.status(self._layouts[index])

    def wait_galera_synced(self, *, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until every running Galera node is Synced in one primary component of all
        of them (e.g. after restarting a node)."""
        running = [
            self._layouts[index] for index in range(self.options.galera) if self.is_running(index)
        ]
        galera_nodes.wait_synced(
            running, deadline=time.monotonic() + timeout, cluster_size=len(running)
        )

    def is_running(self, index: int) -> bool:
        layout = self._layout(index)
        return self._processes.is_alive(self._pids[index], layout.config_file)

    def connect_args(self, index: int, *, user: str = "root") -> dict[str, str | int]:
        """``host``/``port``/``user``/``password`` for PyMySQL or aiomysql, over TCP."""
        if user not in PASSWORDS:
            raise SandboxError(f"unknown sandbox user {user!r} (known: {', '.join(PASSWORDS)})")
        return {
            "host": HOST,
            "port": self._layout(index).port,
            "user": user,
            "password": PASSWORDS[user],
        }

    def execute(self, index: int, sql: str, *, timeout: float = 30.0) -> list[Row]:
        """Run one statement as root on node ``index``; its rows (empty if none)."""
        layout = self._layout(index)
        with NodeSession(layout.key, unix_socket=layout.socket, read_timeout=timeout) as session:
            return session.rows(sql)

    def status(self) -> str:
        """The replication tree read live from the nodes, one line per node."""
        reports = [
            probe(
                index=layout.index,
                port=layout.port,
                socket=layout.socket,
                configured_source_port=self._source_port(layout.index),
                process=self._processes.state(self._pids[layout.index], layout.config_file),
                semi_sync=self.options.semi_sync,
                galera=self.options.is_galera(layout.index),
            )
            for layout in self._layouts
        ]
        return render_tree(reports)

    # ---- controlling nodes ----------------------------------------------------------------

    def down(self) -> None:
        """Stop every node (SIGCONT+SIGTERM, SIGKILL after a few seconds; a Galera sandbox's
        node 0 after the others). Idempotent."""
        targets = [
            (pid, layout.config_file) for pid, layout in zip(self._pids, self._layouts, strict=True)
        ]
        # Galera nodes that all leave at once hang in shutdown until SIGKILL; with node 0
        # still up the others leave cleanly, then node 0 alone (about 2 s each step).
        last = targets[:1] if self.options.galera else []
        self._processes.terminate(targets[len(last) :], grace=DOWN_GRACE_S)
        self._processes.terminate(last, grace=DOWN_GRACE_S)
        self._pids = [None] * len(self._layouts)
        if self.directory.is_dir():
            self._save()
        shutil.rmtree(socket_dir(self.directory), ignore_errors=True)

    def stop(self, index: int) -> None:
        """Shut node ``index`` down gracefully (SIGKILL only if it hangs for 30 s)."""
        layout = self._layout(index)
        self._processes.terminate([(self._pids[index], layout.config_file)], grace=STOP_GRACE_S)
        self._set_pid(index, None)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` and wait until it is gone."""
        layout = self._layout(index)
        self._processes.kill([(self._pids[index], layout.config_file)])
        self._set_pid(index, None)

    def start(self, index: int, *, timeout: float = START_TIMEOUT_S) -> None:
        """Start a stopped node on its datadir; a replica resumes replicating by itself, a
        Galera node rejoins the running ones (by IST, else SST; after a crash, from the
        position ``--wsrep-recover`` finds) and is waited for until Synced.

        With TLS the files are checked again first (one may have been removed or replaced
        since ``up``): one line naming the file rather than a node that does not start or
        replicas that cannot connect to it."""
        layout = self._layout(index)
        if self.is_running(index):
            raise SandboxError(f"node {index} ({layout.key}) is already running")
        if self.options.is_galera(index) and not any(
            self.is_running(other) for other in range(self.options.galera)
        ):
            raise SandboxError(
                f"node {index} ({layout.key}) is a Galera node and no other Galera node runs "
                "to join; rebuild the cluster with `sandbox down` and `sandbox up`"
            )
        if self.tls is not None:
            check_files(self.tls)
        if _is_port_in_use(layout.port):
            raise SandboxError(f"port {layout.port} (node {index}) is already in use")
        socket_dir(self.directory).mkdir(mode=0o755, parents=True, exist_ok=True)
        galera = self.options.is_galera(index)
        self._spawn(index, galera_nodes.rejoin_args(self._mariadbd, layout) if galera else ())
        self._save()
        deadline = time.monotonic() + timeout
        try:
            self._wait_ready([index], deadline)
            if galera:
                galera_nodes.wait_synced([layout], deadline=deadline)
        except BaseException:
            self.kill(index)  # nothing half-started stays behind
            raise

    def hang(self, index: int) -> None:
        """SIGSTOP node ``index``: its sockets stay open but it answers nothing."""
        self._signal_running(index, signal.SIGSTOP)
        deadline = time.monotonic() + 5.0
        while self._state(index) is not ProcessState.STOPPED:
            if time.monotonic() >= deadline:
                raise SandboxError(f"node {index} did not stop on SIGSTOP")
            time.sleep(0.01)

    def resume(self, index: int) -> None:
        """SIGCONT a node hung with :meth:`hang`."""
        self._signal_running(index, signal.SIGCONT)

    def wait_caught_up(self, *, timeout: float = 30.0) -> None:
        """Wait until every running replica replicates (both threads ``Yes``) and has applied
        node 0's current ``gtid_binlog_pos``; raise with the replicas' state otherwise."""
        replicas = [
            self._layouts[index] for index in self.options.replica_indexes if self.is_running(index)
        ]
        replication.wait_caught_up(self._layout(0), replicas, deadline=time.monotonic() + timeout)

    # ---- internals --------------------------------------------------------------------------

    def _layout(self, index: int) -> NodeLayout:
        if not 0 <= index < len(self._layouts):
            raise SandboxError(f"no node {index} (the sandbox has {len(self._layouts)})")
        return self._layouts[index]

    def _source_port(self, index: int) -> int | None:
        source = self.options.source_index(index)
        return None if source is None else self._layouts[source].port

    def _state(self, index: int) -> ProcessState:
        return self._processes.state(self._pids[index], self._layouts[index].config_file)

    def _signal_running(self, index: int, signum: int) -> None:
        layout = self._layout(index)
        if not self._processes.signal(self._pids[index], layout.config_file, signum):
            raise SandboxError(f"node {index} ({layout.key}) is not running")

    def _set_pid(self, index: int, pid: int | None) -> None:
        self._pids[index] = pid
        self._save()

    def _save(self) -> None:
        manifest.write(
            manifest.Manifest(
                directory=self.directory,
                options=self.options,
                mariadbd=self._mariadbd,
                version=self.version,
                socket_dir=socket_dir(self.directory),
                layouts=self._layouts,
                pids=self._pids,
            )
        )

    def _spawn(self, index: int, extra_args: tuple[str, ...] = ()) -> None:
        """Start node ``index`` (``mariadbd --defaults-file=... EXTRA_ARGS``)."""
        layout = self._layouts[index]
        try:
            self._log_offsets[index] = layout.error_log.stat().st_size
        except FileNotFoundError:
            self._log_offsets[index] = 0
        process = spawn(
            self._mariadbd,
            layout.config_file,
            cwd=layout.directory,
            log=layout.error_log,
            parent_death_signal=self.parent_death_signal,
            extra_args=extra_args,
        )
        self._pids[index] = self._processes.adopt(process)

    def _lay_out(self, template: Path) -> None:
        try:
            socket_dir(self.directory).mkdir(mode=0o755, parents=True, exist_ok=True)
            for layout in self._layouts:
                layout.directory.mkdir(parents=True)
                if not self._is_galera_joiner(layout.index):  # seeded from node 0 later
                    copy_template(template, layout.datadir)
                layout.config_file.write_text(render_my_cnf(layout, self.options))
        except OSError as exc:
            raise SandboxError(f"cannot lay out the sandbox in {self.directory}: {exc}") from exc

    def _is_galera_joiner(self, index: int) -> bool:
        return index != 0 and self.options.is_galera(index)

    def _start_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        started = self._bootstrap_galera(deadline) if self.options.galera else []
        pending = [index for index in range(len(self._layouts)) if index not in started]
        for index in pending:
            self._spawn(index)
        self._save()
        self._wait_ready(pending, deadline)
        if self.options.galera:
            galera_nodes.wait_synced(
                self._layouts[: self.options.galera],
                deadline=deadline,
                cluster_size=self.options.galera,
            )
        replication.set_up_master(self._layouts[0])
        semi_sync_clients: dict[NodeLayout, int] = {}
        for layout in self._layouts:
            source = self.options.source_index(layout.index)
            if source is not None:
                replication.attach(
                    layout,
                    self._layouts[source],
                    self.options.tls,
                    server_defaults=self.options.server_defaults,
                )
                source_layout = self._layouts[source]
                semi_sync_clients[source_layout] = semi_sync_clients.get(source_layout, 0) + 1
        replicas = [self._layouts[index] for index in self.options.replica_indexes]
        replication.wait_caught_up(self._layouts[0], replicas, deadline=deadline)
        if self.options.semi_sync:
            replication.wait_semi_sync_clients(semi_sync_clients, deadline=deadline)

    def _bootstrap_galera(self, deadline: float) -> list[int]:
        """Bootstrap node 0 as a new Galera cluster, shut it down cleanly, seed the other
        Galera nodes with its datadir (so they join by IST: see the galera module), and
        start it again as the cluster's first node. The nodes it started: node 0."""
        self._start_first_galera_node(deadline)
        joiners = self._layouts[1 : self.options.galera]
        if joiners:
            self.stop(0)  # a clean shutdown: grastate.dat and InnoDB record the position
            galera_nodes.seed_joiners(
                self._layouts[0].datadir, [layout.datadir for layout in joiners]
            )
            self._start_first_galera_node(deadline)
        return [0]

    def _start_first_galera_node(self, deadline: float) -> None:
        self._spawn(0, galera_nodes.BOOTSTRAP_ARGS)
        self._save()
        self._wait_ready([0], deadline)
        galera_nodes.wait_synced([self._layouts[0]], deadline=deadline, cluster_size=1)

    def _wait_ready(self, indexes: list[int], deadline: float) -> None:
        pending = list(indexes)
        while pending:
            for index in list(pending):
                layout = self._layouts[index]
                pid = self._pids[index]
                if not self._processes.is_alive(pid, layout.config_file):
                    code = None if pid is None else self._processes.exit_code(pid)
                    raise SandboxError(
                        f"node {index} ({layout.key}) failed to start"
                        f"{'' if code is None else f' (exit {code})'}: {self._log_tail(index)}"
                    )
                if layout.socket.exists() and self._answers(layout):
                    pending.remove(index)
            if pending:
                if time.monotonic() >= deadline:
                    index = pending[0]
                    raise SandboxError(
                        f"node {index} ({self._layouts[index].key}) not ready in time: "
                        f"{self._log_tail(index)}"
                    )
                time.sleep(_POLL_S)

    def _log_tail(self, index: int) -> str:
        """The errors (else the last lines) the node logged since it was last started."""
        layout = self._layouts[index]
        try:
            with layout.error_log.open("rb") as log:
                log.seek(self._log_offsets[index])
                text = log.read().decode(errors="replace")
        except OSError:
            return f"no error log at {layout.error_log}"
        errors = [line for line in text.splitlines() if "[ERROR]" in line]
        return tail("\n".join(errors) if errors else text, 3) or f"nothing in {layout.error_log}"

    @staticmethod
    def _answers(layout: NodeLayout) -> bool:
        try:
            with NodeSession(layout.key, unix_socket=layout.socket, connect_timeout=1.0) as s:
                s.rows("SELECT 1")
        except SandboxError:
            return False
        return True


def _is_port_in_use(port: int) -> bool:
    """Whether binding 127.0.0.1:port fails the way it would for mariadbd (SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((HOST, port))
        except OSError:
            return True
    return False


def _prepare_directory(directory: Path, layouts: list[NodeLayout], options: SandboxOptions) -> None:
    """Make ``directory`` ready for a new sandbox: new, or holding a stopped sandbox (whose node
    directories are then removed). A running sandbox there, or node directories not recorded
    in a ``sandbox.json``, are errors. Other files in ``directory`` are left alone."""
    previous = Sandbox.load(directory) if manifest.manifest_path(directory).exists() else None
    if previous is not None:
        running = [node for node in previous.nodes if node.pid is not None]
        if running:
            raise SandboxError(
                f"{directory} already holds a running sandbox ({running[0].key} pid "
                f"{running[0].pid}); run `orchestrator sandbox down --dir {directory}` first"
            )
    for layout in layouts:
        if _is_port_in_use(layout.port):
            raise SandboxError(f"port {layout.port} (node {layout.index}) is already in use")
    for index in range(options.galera):
        for port in dataclasses.astuple(options.galera_ports(index)):
            if _is_port_in_use(port):
                raise SandboxError(f"port {port} (Galera, node {index}) is already in use")
    if previous is not None:
        for node in previous.nodes:
            shutil.rmtree(node.datadir.parent, ignore_errors=True)
        manifest.manifest_path(directory).unlink()
    if directory.exists() and not directory.is_dir():
        raise SandboxError(f"{directory} exists and is not a directory")
    for layout in layouts:
        if layout.directory.exists():
            raise SandboxError(f"{layout.directory} already exists and no sandbox.json owns it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create {directory}: {exc}") from exc
