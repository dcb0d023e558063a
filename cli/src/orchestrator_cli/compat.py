"""``orchestrator -c`` commands of issue 10 (orchestrator-client compatibility): the route each
calls and what it prints, as :class:`Spec` values that :mod:`.commands` turns into its
``Command`` entries. The pieces both modules use (the errors, instance keys, ``Details``) come
from :mod:`orchestrator_cli` and :mod:`.answers`: :mod:`.commands` imports this module.

Commands orchestrator-client has call exactly its paths and print what it prints (its ``jq``
filters, restated in Python): ``async-discover``, ``forget-cluster``, ``snapshot-topologies``,
``which-broken-replicas``, ``which-cluster-osc-replicas``, ``which-cluster-osc-running-replicas``,
``dominant-dc``, ``submit-masters-to-kv-stores``, ``which-gtid-errant``, ``is-replicating``,
``is-replication-stopped``, ``raft-leader``, ``raft-health``, ``raft-leader-hostname``. Those
only orchestrator's own CLI has print what it prints: ``which-cluster-domain``,
``which-downtimed-instances``, ``instance-status``, ``bulk-instances``,
``bulk-promotion-rules``. New: ``set-cluster-alias``, ``automated-recovery-filters``,
``replication-analysis-changelog``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from orchestrator_cli import ClientError, UsageError
from orchestrator_cli.answers import details, key_path, key_text, keys

if TYPE_CHECKING:
    from orchestrator_cli.commands import Invocation

REASONABLE_MAINTENANCE_LAG_SECONDS = 20  # orchestrator's default, for instance-status


@dataclass(frozen=True, slots=True)
class Spec:
    """A command: the API path it asks for, how its answer is printed, and whether it changes
    something (sent as POST)."""

    path: Callable[[Invocation], str]
    output: Callable[[Any, Invocation], str]
    mutates: bool = False


# --- pieces -----------------------------------------------------------------------------------


def host_port(inv: Invocation) -> str:
    """``-i`` as orchestrator-client puts it in a path: ``host/port``."""
    return key_path(inv.need_instance())


def optional_hint(inv: Invocation) -> str:
    """``${alias:-$instance}``: the alias, else ``-i`` as typed, else nothing."""
    if inv.alias:
        return quote(inv.alias, safe="")
    return quote(inv.instance_text, safe=":[]")


def print_key(value: Any) -> str:
    """orchestrator-client's ``print_key``: ``Hostname:Port`` (:func:`.answers.key_text`), or
    the client's error when the answer holds no key."""
    if not isinstance(value, Mapping):
        raise ClientError("no instance key in the answer")
    return key_text(value)


def jq_raw(value: Any) -> str:
    """``jq -r .`` of a JSON value: strings bare, null as ``null``, the rest as JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _running(instance: Mapping[str, Any]) -> bool:
    return instance.get("ReplicationSQLThreadRuning") is True and (
        instance.get("ReplicationIOThreadRuning") is True
    )


def broken(instance: Mapping[str, Any]) -> bool:
    """orchestrator-client's ``filter_broken_replicas``: a thread stopped, and an error."""
    stopped = instance.get("ReplicationSQLThreadRuning") is False or (
        instance.get("ReplicationIOThreadRuning") is False
    )
    return stopped and (instance.get("LastSQLError") != "" or instance.get("LastIOError") != "")


def dominant_dc(masters: Iterable[Mapping[str, Any]]) -> str:
    """``jq -r '.[].DataCenter' | sort | uniq -c | sort -nr | head -n 1 | awk '{print $2}'``:
    the most common data center of the masters; on a tie, the one that sorts last (``sort
    -nr`` compares whole lines backwards once the counts are equal)."""
    counts = Counter(jq_raw(master.get("DataCenter")) for master in masters)
    if not counts:
        return ""
    _, top = max((count, dc) for dc, count in counts.items())
    return top.split()[0] if top.split() else ""


def _threads(instance: Mapping[str, Any], state: int) -> bool:
    return (
        instance.get("ReplicationSQLThreadState") == state
        and instance.get("ReplicationIOThreadState") == state
    )


def instance_status(instance: Mapping[str, Any]) -> str:
    """orchestrator's ``HumanReadableDescription``: ``[lag,status,version,ro|rw,format,
    extras]`` from the instance JSON (the lag counts as too much above orchestrator's default
    ``ReasonableMaintenanceReplicationLagSeconds``, 20 s)."""
    master = instance.get("MasterKey") or {}
    using_gtid = bool(instance.get("UsingOracleGTID") or instance.get("UsingMariaDBGTID"))
    reads = (instance.get("ReadBinlogCoordinates") or {}).get("LogFile")
    is_replica = (
        master.get("Hostname") not in ("", "_", None)
        and master.get("Port")
        and (bool(reads) or using_gtid)
    )
    running = bool(is_replica) and _threads(instance, 1)
    valid = instance.get("IsLastCheckValid") and instance.get("IsRecentlyChecked")
    behind = instance.get("SecondsBehindMaster") or {}
    lag = (instance.get("ReplicationLagSeconds") or {}).get("Int64", 0)
    if instance.get("IsDetached"):
        lag_text = "detached"
    elif not valid:
        lag_text = "unknown"
    elif is_replica and (not running or not behind.get("Valid")):
        lag_text = "null"
    else:
        lag_text = f"{lag}s"
    delay = int(instance.get("SQLDelay") or 0)
    behind_by = int(behind.get("Int64") or 0)
    lagging = abs(behind_by - delay) if delay > 0 else behind_by
    if not instance.get("IsLastCheckValid"):
        status = "invalid"
    elif not instance.get("IsRecentlyChecked"):
        status = "unchecked"
    elif is_replica and not running:
        status = "nonreplicating"
    elif is_replica and lagging > REASONABLE_MAINTENANCE_LAG_SECONDS:
        status = "lag"
    else:
        status = "ok"
    logs = bool(instance.get("LogBinEnabled"))
    extras = [
        ">>" if logs and instance.get("LogReplicationUpdatesEnabled") else "",
        ("GTID:errant" if instance.get("GtidErrant") else "GTID")
        if using_gtid or instance.get("SupportsOracleGTID")
        else "",
        "P-GTID" if instance.get("UsingPseudoGTID") else "",
        "semi:master" if instance.get("SemiSyncMasterStatus") else "",
        "semi:replica" if instance.get("SemiSyncReplicaStatus") else "",
        "downtimed" if instance.get("IsDowntimed") else "",
    ]
    tokens = [
        lag_text,
        status,
        str(instance.get("Version", "")),
        "ro" if instance.get("ReadOnly") else "rw",
        str(instance.get("Binlog_format", "")) if logs else "nobinlog",
        ",".join(extra for extra in extras if extra),
    ]
    return "[" + ",".join(token for token in tokens if token) + "]"


def _instance_if(state: int) -> Callable[[Any, Invocation], str]:
    """``is-replicating`` (1) / ``is-replication-stopped`` (0): the key when both threads are
    in that state, nothing otherwise."""
    return lambda r, i: print_key(r["Key"]) if _threads(r, state) else ""


def search_path(inv: Invocation) -> str:
    """``search``: orchestrator-client's ``-i TEXT``, else orchestrator's ``--pattern``."""
    text = inv.instance_text or inv.pattern or inv.alias
    if not text:
        raise UsageError("search needs -i TEXT (or --pattern TEXT)")
    return f"search?s={quote(text, safe='')}"


def _set_alias(inv: Invocation) -> str:
    if not inv.alias:
        raise UsageError("set-cluster-alias needs -i host:port (a member) and --alias NEW_ALIAS")
    return f"set-cluster-alias/{quote(str(inv.need_instance()), safe=':[]')}?alias=" + quote(
        inv.alias, safe=""
    )


def _leader_hostname(response: Any, _inv: Invocation) -> str:
    """orchestrator-client asks ``raft-state`` for ``Leader`` first, then ``status`` for
    ``Details.Hostname``; ``status`` says itself whether a worker leads (``RaftLeader``)."""
    health = details(response)
    if not isinstance(health, Mapping) or not health.get("RaftLeader"):
        raise ClientError("Cannot determine raft state")
    return jq_raw(health.get("Hostname"))


def _sorted_lines(lines: Iterable[str]) -> str:
    """orchestrator's CLI sorts the lines as strings."""
    return "\n".join(sorted(lines))


SPECS: dict[str, Spec] = {
    # orchestrator-client's commands
    "async-discover": Spec(
        lambda inv: f"async-discover/{host_port(inv)}",
        lambda r, i: print_key((details(r) or {}).get("Key")),
        mutates=True,
    ),
    "forget-cluster": Spec(
        lambda inv: f"forget-cluster/{inv.cluster_hint()}", lambda r, i: "", mutates=True
    ),
    "snapshot-topologies": Spec(
        lambda inv: "snapshot-topologies", lambda r, i: jq_raw(details(r)), mutates=True
    ),
    "which-broken-replicas": Spec(
        lambda inv: f"instance-replicas/{host_port(inv)}",
        lambda r, i: keys(replica for replica in r if broken(replica)),
    ),
    "which-cluster-osc-replicas": Spec(
        lambda inv: f"cluster-osc-replicas/{inv.cluster_hint()}", lambda r, i: keys(r)
    ),
    "which-cluster-osc-running-replicas": Spec(
        lambda inv: f"cluster-osc-replicas/{inv.cluster_hint()}",
        lambda r, i: keys(replica for replica in r if _running(replica)),
    ),
    "dominant-dc": Spec(lambda inv: "masters", lambda r, i: dominant_dc(r)),
    "submit-masters-to-kv-stores": Spec(
        lambda inv: f"submit-masters-to-kv-stores/{quote(inv.alias, safe='')}",
        lambda r, i: "\n".join(f"{p['Key']}:{p['Value']}" for p in details(r) or []),
    ),
    "which-gtid-errant": Spec(
        lambda inv: f"instance/{host_port(inv)}", lambda r, i: jq_raw(r.get("GtidErrant"))
    ),
    "is-replicating": Spec(lambda inv: f"instance/{host_port(inv)}", _instance_if(1)),
    "is-replication-stopped": Spec(lambda inv: f"instance/{host_port(inv)}", _instance_if(0)),
    "raft-leader": Spec(lambda inv: "raft-leader", lambda r, i: jq_raw(r)),
    "raft-health": Spec(lambda inv: "raft-health", lambda r, i: jq_raw(r)),
    "raft-leader-hostname": Spec(lambda inv: "status", _leader_hostname),
    # orchestrator's own CLI commands
    "which-cluster-domain": Spec(
        lambda inv: f"cluster-info/{inv.cluster_hint()}",
        lambda r, i: jq_raw(r.get("ClusterDomain")),
    ),
    "which-downtimed-instances": Spec(
        lambda inv: f"downtimed/{optional_hint(inv)}", lambda r, i: keys(r)
    ),
    "instance-status": Spec(
        lambda inv: f"instance/{host_port(inv)}", lambda r, i: instance_status(r)
    ),
    "bulk-instances": Spec(
        lambda inv: "bulk-instances", lambda r, i: _sorted_lines(print_key(key) for key in r)
    ),
    "bulk-promotion-rules": Spec(
        lambda inv: "bulk-promotion-rules",
        lambda r, i: _sorted_lines(f"{print_key(rule)} {rule['PromotionRule']}" for rule in r),
    ),
    # new
    "set-cluster-alias": Spec(_set_alias, lambda r, i: jq_raw(r.get("Message")), mutates=True),
    "automated-recovery-filters": Spec(
        lambda inv: "automated-recovery-filters",
        lambda r, i: "\n".join(
            f"{name}\t{','.join(values)}" for name, values in sorted((details(r) or {}).items())
        ),
    ),
    "replication-analysis-changelog": Spec(
        lambda inv: "replication-analysis-changelog",
        lambda r, i: "\n".join(
            f"{print_key(entry['AnalyzedInstanceKey'])}\t{change}"
            for entry in r
            for change in entry["Changelog"]
        ),
    ),
}

__all__ = [
    "SPECS",
    "Spec",
    "broken",
    "dominant_dc",
    "host_port",
    "instance_status",
    "jq_raw",
    "optional_hint",
    "print_key",
    "search_path",
]
