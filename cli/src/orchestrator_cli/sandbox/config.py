"""What a sandbox is made of: options, node layout, users and each node's ``my.cnf``.

Everything here is pure (no processes, no sockets) so it can be unit-tested; the
:mod:`orchestrator_cli.sandbox.sandbox` module turns it into running ``mariadbd`` processes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator_shared.errors import SandboxError

HOST = "127.0.0.1"

TOPOLOGY_USER = "orchestrator"
TOPOLOGY_PASSWORD = "orch_topology"
REPLICATION_USER = "repl"
REPLICATION_PASSWORD = "repl_pass"
ROOT_USER = "root"

PASSWORDS: dict[str, str] = {
    ROOT_USER: "",
    TOPOLOGY_USER: TOPOLOGY_PASSWORD,
    REPLICATION_USER: REPLICATION_PASSWORD,
}

# What a topology manager needs on MariaDB 10.11. SUPER no longer implies READ_ONLY ADMIN
# there, and REPLICATION CLIENT is an alias of BINLOG MONITOR.
TOPOLOGY_PRIVILEGES = (
    "SUPER",
    "PROCESS",
    "RELOAD",
    "REPLICATION SLAVE",
    "BINLOG MONITOR",
    "BINLOG ADMIN",
    "REPLICATION MASTER ADMIN",
    "REPLICA MONITOR",
    "REPLICATION SLAVE ADMIN",
    "READ_ONLY ADMIN",
    "CONNECTION ADMIN",
    "SELECT",
)

# what the recovery leader manages by default (ManageReplicaHeartbeat, ReplicaNetTimeoutSeconds
# 1): a sandbox starts as the stack would leave it, so no replica's threads restart under a test
SLAVE_NET_TIMEOUT_S = 1
HEARTBEAT_PERIOD_S = 0.5
SEMI_SYNC_TIMEOUT_MS = 1000
# Both the template datadir and every node use this redo log size, so no node resizes it.
INNODB_LOG_FILE_SIZE = "8M"

BINLOG_BASENAME = "mariadb-bin"

SANDBOX_DATABASE = "sandbox"
SANDBOX_TABLE = "sandbox.t"

# Galera (``sandbox up --galera N``): the provider of Debian's galera-4, and the GTID domain
# every Galera node writes replicated transactions in (``wsrep_gtid_domain_id``), so that an
# async replica follows any node of the cluster with one GTID position. Each node's own,
# non-replicated writes go to a domain of its own (``gtid_domain_id`` = base + index).
GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
GALERA_CLUSTER_NAME = "orchestrator-sandbox"
GALERA_GTID_DOMAIN = 0
GALERA_LOCAL_DOMAIN_BASE = 100
# group communication, incremental state transfer (IST), snapshot state transfer (SST)
GALERA_PORTS_PER_NODE = 3
# preallocated per node: small, yet enough to rejoin by IST after a test's few writes
GALERA_GCACHE_SIZE = "16M"

MANIFEST_NAME = "sandbox.json"
MAX_SOCKET_PATH = 100
SOCKET_ROOT = Path("/tmp")


@dataclass(frozen=True, kw_only=True)
class SandboxTLS:
    """The PEM files every node serves TLS with: ``ca`` (trusted for client certificates and
    by the replicas, which verify their source's certificate), ``cert`` and its ``key``.

    The paths are made absolute (each ``mariadbd`` runs in its node directory) and kept in
    ``sandbox.json``, so a node restarted later uses the same files.
    :func:`orchestrator_cli.sandbox.tls.check_files` checks them before anything starts.
    """

    ca: Path
    cert: Path
    key: Path

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            object.__setattr__(self, name, Path(getattr(self, name)).absolute())


@dataclass(frozen=True)
class GaleraPorts:
    """The three extra ports of one Galera node (all on 127.0.0.1)."""

    group: int
    ist: int
    sst: int


@dataclass(frozen=True, kw_only=True)
class SandboxOptions:
    """How to build a sandbox. Invalid values raise :class:`SandboxError` at construction.

    ``galera``: nodes ``0..galera-1`` form a Galera cluster (all writable) and the other
    nodes are async replicas of node 0; 0 for a plain master/replicas sandbox.
    """

    nodes: int = 4
    base_port: int
    chain: bool = False
    semi_sync: bool = False
    tls: SandboxTLS | None = None
    galera: int = 0
    # MariaDB's own replication timeouts (slave_net_timeout 60 s, heartbeat 30 s) instead of
    # the sandbox's short ones: how real fleets run, for the hung-master scenarios
    server_defaults: bool = False

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise SandboxError(f"nodes must be at least 1, got {self.nodes}")
        if not 1 <= self.base_port <= 65535:
            raise SandboxError(f"base port must be in 1..65535, got {self.base_port}")
        if not 0 <= self.galera <= self.nodes:
            raise SandboxError(f"galera nodes must be in 0..{self.nodes}, got {self.galera}")
        if self.galera and (self.chain or self.semi_sync):
            raise SandboxError("a Galera sandbox has no chain or semi-sync option")
        last = self.base_port + self.port_count - 1
        if last > 65535:
            raise SandboxError(
                f"{self.nodes} nodes from base port {self.base_port} would need port {last} > 65535"
            )

    @property
    def port_count(self) -> int:
        """How many consecutive ports from ``base_port`` the sandbox uses: one per node, then
        :data:`GALERA_PORTS_PER_NODE` per Galera node."""
        return self.nodes + GALERA_PORTS_PER_NODE * self.galera

    def is_galera(self, index: int) -> bool:
        return index < self.galera

    def galera_ports(self, index: int) -> GaleraPorts:
        """Galera node ``index``'s extra ports, after the nodes' own ports."""
        if not self.is_galera(index):
            raise SandboxError(f"node {index} is not a Galera node")
        first = self.base_port + self.nodes + GALERA_PORTS_PER_NODE * index
        return GaleraPorts(group=first, ist=first + 1, sst=first + 2)

    def source_index(self, index: int) -> int | None:
        """The node that node ``index`` replicates from as built: none for the master (or a
        Galera node); node 0 for an async replica of a Galera sandbox."""
        if index == 0 or self.is_galera(index):
            return None
        return index - 1 if self.chain else 0

    @property
    def replica_indexes(self) -> list[int]:
        """The nodes that replicate (asynchronously) from another node as built."""
        return [index for index in range(self.nodes) if self.source_index(index) is not None]


@dataclass(frozen=True, kw_only=True)
class NodeLayout:
    """Where one node lives: its port, server id and files."""

    index: int
    port: int
    server_id: int
    directory: Path
    socket: Path

    @property
    def key(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def datadir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "my.cnf"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mariadbd.pid"


def socket_dir(directory: Path) -> Path:
    """A short directory for the nodes' unix sockets, keyed by the sandbox directory.

    Unix socket paths are limited to ~108 bytes and pytest's temporary directories are long,
    so sockets live under ``/tmp/orch-sbx-<hash>`` rather than inside the sandbox directory.
    ``directory`` should be absolute: the same sandbox must always map to the same sockets.
    """
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
    return SOCKET_ROOT / f"orch-sbx-{digest}"


def node_layouts(directory: Path, options: SandboxOptions) -> list[NodeLayout]:
    """The nodes of a sandbox in ``directory``: node ``i`` on ``base_port + i``, server id i+1."""
    sockets = socket_dir(directory)
    layouts = []
    for index in range(options.nodes):
        layout = NodeLayout(
            index=index,
            port=options.base_port + index,
            server_id=index + 1,
            directory=directory / f"node{index}",
            socket=sockets / f"node{index}.sock",
        )
        if len(str(layout.socket)) >= MAX_SOCKET_PATH:
            raise SandboxError(f"socket path too long: {layout.socket}")
        layouts.append(layout)
    return layouts


def render_my_cnf(
    node: NodeLayout, options: SandboxOptions, *, run_as_root: bool | None = None
) -> str:
    """The ``my.cnf`` of one node (read with ``--defaults-file``, so nothing else is read).

    Node 0 (and every Galera node) starts writable, every other node ``read_only``. Semi-sync
    (when asked for) is enabled as both master and replica on every node, so any node can be
    promoted.
    """
    if run_as_root is None:
        run_as_root = os.geteuid() == 0
    read_only = "OFF" if options.source_index(node.index) is None else "ON"
    lines = [
        f"# orchestrator sandbox node {node.index} ({node.key}), written by `sandbox up`;",
        "# read again whenever the node starts (so it restarts with its as-built read_only)",
        "[mariadbd]",
        *(["user=root"] if run_as_root else []),
        f"datadir={node.datadir}",
        f"port={node.port}",
        f"socket={node.socket}",
        f"pid-file={node.pid_file}",
        f"log-error={node.error_log}",
        f"bind-address={HOST}",
        "skip-name-resolve",
        f"server-id={node.server_id}",
        f"log-bin={BINLOG_BASENAME}",
        f"log-bin-index={BINLOG_BASENAME}.index",
        "relay-log=relay-bin",
        "relay-log-index=relay-bin.index",
        "binlog-format=ROW",
        "log-slave-updates=ON",
        "gtid-strict-mode=ON",
        f"report-host={HOST}",
        f"report-port={node.port}",
        *([] if options.server_defaults else [f"slave-net-timeout={SLAVE_NET_TIMEOUT_S}"]),
        f"read-only={read_only}",
        "# small footprint, fast start and stop",
        "performance-schema=OFF",
        "innodb-buffer-pool-size=32M",
        f"innodb-log-file-size={INNODB_LOG_FILE_SIZE}",
        "innodb-log-buffer-size=2M",
        "innodb-use-native-aio=OFF",
        "innodb-buffer-pool-load-at-startup=OFF",
        "innodb-buffer-pool-dump-at-shutdown=OFF",
        "innodb-flush-log-at-trx-commit=2",
        "sync-binlog=0",
        "key-buffer-size=1M",
        "aria-pagecache-buffer-size=1M",
        "max-connections=100",
        "table-open-cache=200",
        "table-definition-cache=400",
        "thread-cache-size=4",
    ]
    if options.tls is not None:
        lines += [
            "# TLS for clients and for the replicas of this node (`sandbox up --ssl-*`)",
            f"ssl-ca={options.tls.ca}",
            f"ssl-cert={options.tls.cert}",
            f"ssl-key={options.tls.key}",
        ]
    if options.is_galera(node.index):
        lines += _galera_lines(node, options)
    if options.semi_sync:
        lines += [
            "rpl-semi-sync-master-enabled=ON",
            "rpl-semi-sync-slave-enabled=ON",
            f"rpl-semi-sync-master-timeout={SEMI_SYNC_TIMEOUT_MS}",
            # with no semi-sync replica connected, commit at once instead of waiting the timeout
            "rpl-semi-sync-master-wait-no-slave=OFF",
        ]
    if options.is_galera(node.index):
        # the SST scripts read [sst]; without this, mariabackup SST archives logs in /tmp
        lines += ["", "[sst]", "sst-log-archive=0"]
    lines += [
        "",
        "# `mariadb --defaults-file=<this file>` opens a root session on this node",
        "[client]",
        f"socket={node.socket}",
        "user=root",
        "",
    ]
    return "\n".join(lines)


def _galera_lines(node: NodeLayout, options: SandboxOptions) -> list[str]:
    """The wsrep settings of Galera node ``node``: every address on 127.0.0.1 and its own ports.

    State transfer uses mariabackup, which works with ``user=root`` (rsync SST does not: its
    rsync daemon drops to ``nobody``, which cannot write a root-owned datadir). ``up`` seeds
    the joiners with the first node's datadir so that they join by IST, not SST.
    """
    cluster = ",".join(
        f"{HOST}:{options.galera_ports(index).group}" for index in range(options.galera)
    )
    ports = options.galera_ports(node.index)
    provider_options = (
        f"gmcast.listen_addr=tcp://{HOST}:{ports.group};ist.recv_addr={HOST}:{ports.ist};"
        f"gcache.size={GALERA_GCACHE_SIZE}"
    )
    return [
        "# Galera node (`sandbox up --galera`): every node writable, async replicas under node 0",
        "wsrep-on=ON",
        f"wsrep-provider={GALERA_PROVIDER}",
        f"wsrep-cluster-name={GALERA_CLUSTER_NAME}",
        f"wsrep-cluster-address=gcomm://{cluster}",
        f"wsrep-node-name=node{node.index}",
        f"wsrep-node-address={HOST}:{ports.group}",
        f"wsrep-node-incoming-address={node.key}",
        f'wsrep-provider-options="{provider_options}"',
        f"wsrep-sst-receive-address={HOST}:{ports.sst}",
        "wsrep-sst-method=mariabackup",
        f"wsrep-sst-auth={ROOT_USER}:{PASSWORDS[ROOT_USER]}",
        "wsrep-gtid-mode=ON",
        f"wsrep-gtid-domain-id={GALERA_GTID_DOMAIN}",
        f"gtid-domain-id={GALERA_LOCAL_DOMAIN_BASE + node.index}",
        "innodb-autoinc-lock-mode=2",
    ]


def change_master_sql(
    source_port: int, tls: SandboxTLS | None = None, *, server_defaults: bool = False
) -> str:
    """``CHANGE MASTER TO`` for a replica of the node on ``source_port`` (GTID, fast retry;
    the sandbox's short heartbeat unless ``server_defaults``).

    With ``tls`` the replica connects over TLS and verifies its source's certificate (chain to
    the CA, and 127.0.0.1 in its names). MariaDB keeps these settings through a later
    ``CHANGE MASTER TO master_host=...``, so a replica moved by a recovery stays on TLS.
    """
    sql = (
        f"CHANGE MASTER TO master_host='{HOST}', master_port={source_port}, "
        f"master_user='{REPLICATION_USER}', master_password='{REPLICATION_PASSWORD}', "
        "master_use_gtid=slave_pos, master_connect_retry=1"
    )
    if not server_defaults:
        sql += f", master_heartbeat_period={HEARTBEAT_PERIOD_S}"
    if tls is not None:
        sql += (
            f", master_ssl=1, master_ssl_ca={_sql_string(str(tls.ca))}, "
            "master_ssl_verify_server_cert=1"
        )
    return sql


def _sql_string(text: str) -> str:
    """``text`` as a quoted SQL string literal (a file path may hold a quote)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def master_setup_sql() -> list[str]:
    """What the master runs before any replica attaches, so that all of it replicates."""
    privileges = ", ".join(TOPOLOGY_PRIVILEGES)
    return [
        f"CREATE USER '{TOPOLOGY_USER}'@'%' IDENTIFIED BY '{TOPOLOGY_PASSWORD}'",
        f"GRANT {privileges} ON *.* TO '{TOPOLOGY_USER}'@'%'",
        f"CREATE USER '{REPLICATION_USER}'@'%' IDENTIFIED BY '{REPLICATION_PASSWORD}'",
        f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'%'",
        f"CREATE DATABASE {SANDBOX_DATABASE}",
        f"CREATE TABLE {SANDBOX_TABLE} ("
        "id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "note VARCHAR(100) NOT NULL, "
        "created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"
        ") ENGINE=InnoDB",
        f"INSERT INTO {SANDBOX_TABLE} (note) VALUES ('sandbox created')",
    ]
