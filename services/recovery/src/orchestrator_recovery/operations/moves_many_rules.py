"""The pure decisions of the moves of many replicas
(:mod:`orchestrator_recovery.operations.moves_many`):
which replicas a ``pattern`` selects, which replica ``regroup-replicas`` promotes, whether an
instance may become co-master or take its master, and the statements make-co-master sends.

Nothing here touches a server; unit tests feed
:class:`~orchestrator_recovery.operations.moves_sql.Server` values directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator_recovery.operations.moves_sql import (
    REASONABLE_LAG_SECONDS,
    Server,
    missing,
    refusal,
    version_tuple,
)
from orchestrator_recovery.sql import quote
from orchestrator_shared.errors import InvalidGtid, OperationRefused
from orchestrator_shared.gtid import MariaGtidPosition
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.patterns import InvalidPattern, compile_pattern


def selected(keys: Iterable[InstanceKey], pattern: str) -> list[InstanceKey]:
    """The keys whose ``host:port`` the regex ``pattern`` matches (all when it is empty), in key
    order; a bad regex is refused."""
    ordered = sorted(set(keys), key=str)
    if not pattern:
        return ordered
    try:
        compiled = compile_pattern(pattern)  # RE2: linear time on the recovery leader
    except InvalidPattern as exc:
        raise OperationRefused(f"bad pattern: {exc}") from None
    return [key for key in ordered if compiled.search(str(key))]


def position(server: Server) -> MariaGtidPosition:
    """What a MariaDB replica has: its applied ``gtid_slave_pos`` merged with its own log."""
    try:
        applied = MariaGtidPosition.parse(server.positions.applied)
        logged = MariaGtidPosition.parse(server.positions.binlog)
    except InvalidGtid:
        return MariaGtidPosition()
    return applied.merged_with(logged)


def _advance(server: Server) -> int:
    """A total over the domains: when one position contains another, it is the larger."""
    here = position(server)
    return sum(here.seq_no(domain) for domain in here.domains)


def unfit(server: Server, others: Sequence[Server]) -> str | None:
    """Why ``server`` cannot be the master of ``others`` after a regroup, or None."""
    status = server.replica
    if status is None or not status.using_gtid:
        return "does not replicate with GTID"
    if not (server.log_bin and server.log_slave_updates):
        return "needs log_bin and log_slave_updates"
    if status.sql_delay > 0:
        return f"is delayed (SQL_Delay {status.sql_delay}s)"
    if not (status.is_io_running and status.is_sql_running):
        return f"is not replicating ({status.describe()})"
    higher = [o.key for o in others if version_tuple(o.version) < version_tuple(server.version)]
    if higher:
        return f"has a higher version ({server.version}) than {', '.join(map(str, higher))}"
    return None


@dataclass(frozen=True, slots=True)
class Choice:
    """``regroup-replicas``' pick: the promoted replica (None: none fits) and why each of the
    others could not be it."""

    promoted: Server | None
    passed_over: dict[InstanceKey, str]


def choose_promoted(replicas: Sequence[Server]) -> Choice:
    """The most up-to-date replica (by GTID position; ties: the lower key) that can serve as
    the master of all the others: GTID, ``log_bin`` and ``log_slave_updates``, replicating,
    not delayed, and not of a higher version than any of them."""
    reasons: dict[InstanceKey, str] = {}
    fit: list[Server] = []
    for server in replicas:
        others = [o for o in replicas if o.key != server.key]
        why = unfit(server, others)
        if why is None:
            fit.append(server)
        else:
            reasons[server.key] = why
    if not fit:
        return Choice(None, reasons)
    best = min(fit, key=lambda s: (-_advance(s), str(s.key)))
    for server in fit:
        if server.key != best.key:
            reasons[server.key] = f"less up to date than {best.key}"
    return Choice(best, reasons)


def take_master_refusal(
    instance: Server, master: Server, *, max_lag: int = REASONABLE_LAG_SECONDS
) -> str | None:
    """Why ``instance`` cannot swap places with its ``master`` (checked before anything)."""
    if instance.master != master.key:
        return f"{instance.key} does not replicate from {master.key}"
    if master.master is None:
        return (
            f"{master.key} is not a replica: take-master swaps an instance with an intermediate "
            "master (use graceful-master-takeover to replace a cluster master)"
        )
    if master.master == instance.key:
        return f"{master.key} is co-master of {instance.key}: cannot take it"
    return refusal(master, instance, max_lag=max_lag)  # the master will replicate from it


def co_master_refusal(
    instance: Server,
    master: Server,
    *,
    read_only: bool,
    max_lag: int = REASONABLE_LAG_SECONDS,
) -> str | None:
    """Why ``master`` cannot start replicating from its replica ``instance`` (make-co-master),
    or None."""
    key = instance.key
    if instance.replica is None or instance.master is None:
        return f"{key} is not a replica"
    if instance.master != master.key:
        return f"{key} does not replicate from {master.key}"
    if master.master == key:
        return f"{key} is already co master"
    if master.master is not None:
        return (
            f"{key} is not a direct replica of a cluster master: {master.key} replicates from "
            f"{master.master} (already co-master, or an intermediate master)"
        )
    if not instance.replica.using_gtid:
        return f"{key} does not replicate with GTID (Using_Gtid=No): refusing a GTID co-master"
    if not read_only:
        return (
            f"instance {key} is not read-only; first make it read-only before making it co-master"
        )
    if not (instance.log_bin and instance.log_slave_updates):
        return f"{key} needs log_bin and log_slave_updates to be a co-master"
    if instance.dialect.is_mariadb != master.dialect.is_mariadb:
        return f"{key} and {master.key} are not of the same flavor"
    if version_tuple(instance.version) > version_tuple(master.version):
        return f"{key} has a higher version ({instance.version}) than {master.key}"
    status = instance.replica
    if status.sql_delay > 0:
        return f"{key} is delayed (SQL_Delay {status.sql_delay}s)"
    if not (status.is_io_running and status.is_sql_running):
        return f"{key} is not replicating ({status.describe()})"
    if instance.lag is None or instance.lag > max_lag:
        shown = "unknown" if instance.lag is None else f"{instance.lag}s"
        return f"{key} is lagging (Seconds_Behind_Master {shown}, more than {max_lag})"
    errant = missing(instance, master)  # the instance must hold nothing its master lacks
    if errant is not None:
        return errant.replace("it would stop with error 1236", "errant transactions")
    return None


def co_master_sql(
    instance: InstanceKey, start: str, credentials: tuple[str, str] | None
) -> list[str]:
    """What the master runs to replicate from ``instance`` with MariaDB GTID.

    The master never replicated, so its ``gtid_slave_pos`` says nothing useful: it is set to
    ``start``, the instance's ``gtid_binlog_pos`` read just before. The instance has all of it
    (it is a subset of the master's own log: the instance has no errant transaction), and
    everything the instance logs after it came from the master, whose own events its IO thread
    skips by server_id: nothing is applied twice. ``current_pos`` would instead ask from the
    master's own newest GTID, which a replica still behind a written-to master lacks (1236).
    """
    parts = [f"master_host={quote(instance.host)}", f"master_port={int(instance.port)}"]
    if credentials is not None:
        user, password = credentials
        parts += [f"master_user={quote(user)}", f"master_password={quote(password)}"]
    parts.append("master_use_gtid=slave_pos")
    return [
        f"SET GLOBAL gtid_slave_pos = {quote(start)}",
        "CHANGE MASTER TO " + ", ".join(parts),
        "START SLAVE",
    ]
