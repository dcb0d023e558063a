"""The ``orchestrator -c`` commands: for each, the API route it calls and what it prints (what
orchestrator-client prints), with the invocation they read. :mod:`.client` parses the command
line and runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

# the client's errors live in the package (compat raises them too), still importable from here
from orchestrator_cli import ClientError as ClientError  # noqa: PLC0414 - re-exported
from orchestrator_cli import UsageError as UsageError  # noqa: PLC0414 - re-exported
from orchestrator_cli import compat
from orchestrator_cli.answers import details as _details
from orchestrator_cli.answers import key_path, key_text, keys
from orchestrator_shared.instance_key import InstanceKey

DEFAULT_API = "http://127.0.0.1:3000"
EXIT_ERROR = 1
EXIT_USAGE = 2
RECOVERY_TIMEOUT = 150.0  # above the API's wait for the recovery worker (120 s)


@dataclass(frozen=True, slots=True)
class Invocation:
    command: str
    instance: InstanceKey | None
    destination: InstanceKey | None
    alias: str
    owner: str
    reason: str
    duration: str
    promotion_rule: str
    pattern: str
    binlog: str = ""
    seconds: str = ""
    tag: str = ""  # --tag: name, name=value, ~name, comma-joined (tags commands)
    instance_text: str = ""  # -i as typed (orchestrator-client puts it in paths as it is)

    def need_instance(self) -> InstanceKey:
        if self.instance is None:
            raise UsageError(f"{self.command} needs -i host:port")
        return self.instance

    def need_destination(self) -> InstanceKey:
        if self.destination is None:
            raise UsageError(f"{self.command} needs -d host:port")
        return self.destination

    def cluster_hint(self) -> str:
        if self.alias:
            return quote(self.alias, safe="")
        if self.instance is not None:  # a member's host:port is a cluster hint too
            return quote(self.instance_text or str(self.instance), safe=":[]")
        raise UsageError(f"{self.command} needs -alias or -i host:port")


Output = Callable[[Any, Invocation], str]


@dataclass(frozen=True, slots=True)
class Command:
    path: Callable[[Invocation], str]
    output: Output
    mutates: bool = False
    timeout: float = 30.0  # seconds; a recovery waits for the worker (hooks, catch-up)


def _replication_analysis(response: Any, _inv: Invocation) -> str:
    lines = []
    for entry in _details(response) or []:
        key = key_text(entry["AnalyzedInstanceKey"])
        cluster = entry.get("ClusterDetails", {}).get("ClusterName", "")
        code = entry.get("Analysis", "")
        if code == "NoProblem":  # orchestrator-client: the first structure warning
            code = next(iter(entry.get("StructureAnalysis") or []), "")
        lines.append(f"{key} (cluster {cluster}): {code}")
    return "\n".join(lines)


def _instance(inv: Invocation) -> str:
    return key_path(inv.need_instance())


# --- recovery commands ----------------------------------------------------------------------


def _recover(route: str) -> Callable[[Invocation], str]:
    def path(inv: Invocation) -> str:
        target = f"{route}/{_instance(inv)}"
        return f"{target}/{key_path(inv.destination)}" if inv.destination else target

    return path


def _promoted(response: Any, _inv: Invocation) -> str:
    """``recover``: the promoted key (``Details``); nothing when no instance was promoted (a
    dead intermediate master whose replicas were moved)."""
    details = _details(response)
    return key_text(details) if isinstance(details, dict) else ""


def _successor(response: Any, _inv: Invocation) -> str:
    details = _details(response)
    successor = details.get("SuccessorKey") if isinstance(details, dict) else None
    if not isinstance(successor, dict):
        raise ClientError("no successor was promoted")
    return key_text(successor)


def _takeover(route: str, *, designated: bool = False) -> Callable[[Invocation], str]:
    """``route/{cluster hint}[/designated host/port]`` (``-d`` required when ``designated``)."""

    def path(inv: Invocation) -> str:
        target = inv.need_destination() if designated else inv.destination
        base = f"{route}/{inv.cluster_hint()}"
        return f"{base}/{key_path(target)}" if target is not None else base

    return path


def _comment(inv: Invocation) -> str:
    if not inv.reason.strip():
        raise UsageError(f"{inv.command} needs --reason")
    return f"comment={quote(inv.reason, safe='')}"


def _plain(response: Any, _inv: Invocation) -> str:
    details = _details(response)
    return "" if details is None else str(details)


def _control(route: str) -> Callable[[Invocation], str]:
    return lambda inv: f"{route}/{_instance(inv)}"


def _details_key(response: Any, _inv: Invocation) -> str:
    details = _details(response)
    if not isinstance(details, dict) or not isinstance(details.get("Key"), dict):
        raise ClientError("no instance in the answer")
    return key_text(details["Key"])


def _needed(inv: Invocation, flag: str, value: str) -> str:
    if not value.strip():
        raise UsageError(f"{inv.command} needs --{flag}")
    return value.strip()


def _below(route: str) -> Callable[[Invocation], str]:
    return lambda inv: f"{route}/{_instance(inv)}/{key_path(inv.need_destination())}"


def _moved(response: Any, _inv: Invocation) -> str:
    """orchestrator-client's ``Details.Key<Details.MasterKey`` after a move."""
    details = _details(response)
    if not isinstance(details, dict) or not isinstance(details.get("Key"), dict):
        raise ClientError("no instance in the answer")
    master = details.get("MasterKey")
    if not isinstance(master, dict):
        raise ClientError("no master in the answer")
    return f"{key_text(details['Key'])}<{key_text(master)}"


def _many(route: str, below: bool) -> Callable[[Invocation], str]:
    """``route/{instance}/{destination}`` (``-d`` required when ``below``, else optional: then
    orchestrator-client's ``route/{instance}/``), with ``?pattern=`` when ``-s`` is given."""

    def path(inv: Invocation) -> str:
        if below:
            base = _below(route)(inv)
        else:
            base = f"{_control(route)(inv)}/{key_path(inv.destination) if inv.destination else ''}"
        return base + (f"?pattern={quote(inv.pattern, safe='')}" if inv.pattern else "")

    return path


def _listed(response: Any, _inv: Invocation) -> str:
    """A list of instances in Details, one key a line (or the one key Details holds)."""
    details = _details(response)
    return keys(details) if isinstance(details, list) else key_text(details)


def _repoint(inv: Invocation) -> str:
    if inv.destination is None:
        return f"repoint/{_instance(inv)}"  # to its current master
    return _below("repoint")(inv)


def _can_replicate(response: Any, inv: Invocation) -> str:
    """The destination when ``Message`` says true, nothing otherwise."""
    message = response.get("Message") if isinstance(response, dict) else None
    return str(inv.need_destination()) if "true" in str(message or "") else ""


COMMANDS: dict[str, Command] = {
    "clusters": Command(
        lambda inv: "clusters-info", lambda r, i: "\n".join(c["ClusterName"] for c in r)
    ),
    "clusters-alias": Command(
        lambda inv: "clusters-info",
        lambda r, i: "\n".join(f"{c['ClusterName']},{c['ClusterAlias']}" for c in r),
    ),
    "all-instances": Command(lambda inv: "all-instances", lambda r, i: keys(r)),
    "all-clusters-masters": Command(lambda inv: "masters", lambda r, i: keys(r)),
    "search": Command(compat.search_path, lambda r, i: keys(r)),
    "instance": Command(lambda inv: f"instance/{_instance(inv)}", lambda r, i: key_text(r["Key"])),
    "which-instance": Command(
        lambda inv: f"instance/{_instance(inv)}", lambda r, i: key_text(r["Key"])
    ),
    "which-master": Command(
        lambda inv: f"instance/{_instance(inv)}", lambda r, i: key_text(r["MasterKey"])
    ),
    "which-replicas": Command(
        lambda inv: f"instance-replicas/{_instance(inv)}", lambda r, i: keys(r)
    ),
    "which-cluster": Command(
        lambda inv: f"cluster-info/{inv.cluster_hint()}", lambda r, i: str(r["ClusterName"])
    ),
    "which-cluster-alias": Command(
        lambda inv: f"cluster-info/{inv.cluster_hint()}", lambda r, i: str(r["ClusterAlias"])
    ),
    "which-cluster-instances": Command(
        lambda inv: f"cluster/{inv.cluster_hint()}", lambda r, i: keys(r)
    ),
    "which-cluster-master": Command(
        lambda inv: f"master/{inv.cluster_hint()}", lambda r, i: str(r["ClusterName"])
    ),
    "topology": Command(
        lambda inv: f"topology/{inv.cluster_hint()}", lambda r, i: str(_details(r))
    ),
    "topology-tabulated": Command(
        lambda inv: f"topology-tabulated/{inv.cluster_hint()}", lambda r, i: str(_details(r))
    ),
    "replication-analysis": Command(lambda inv: "replication-analysis", _replication_analysis),
    "problems": Command(lambda inv: "problems", lambda r, i: keys(r)),
    "downtimed": Command(
        lambda inv: f"downtimed/{compat.optional_hint(inv)}", lambda r, i: keys(r)
    ),
    "discover": Command(
        lambda inv: f"discover/{_instance(inv)}",
        lambda r, i: key_text(_details(r)["Key"]),
        mutates=True,
    ),
    "forget": Command(lambda inv: f"forget/{_instance(inv)}", lambda r, i: "", mutates=True),
    "begin-downtime": Command(
        lambda inv: (  # without --duration: the API's default (MaintenanceExpireMinutes)
            f"begin-downtime/{_instance(inv)}/{quote(inv.owner, safe='')}/"
            f"{quote(inv.reason, safe='')}"
            + (f"/{quote(inv.duration, safe='')}" if inv.duration else "")
        ),
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    "end-downtime": Command(
        lambda inv: f"end-downtime/{_instance(inv)}",
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    "register-candidate": Command(
        lambda inv: f"register-candidate/{_instance(inv)}/{quote(inv.promotion_rule, safe='')}",
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    # orchestrator's CLI lists these from its backend; here the API's lost-in-recovery route
    "which-lost-in-recovery": Command(
        lambda inv: (
            f"lost-in-recovery/{inv.cluster_hint()}"
            if inv.alias or inv.instance
            else "lost-in-recovery"
        ),
        lambda r, i: keys(r),
    ),
    # recoveries (orchestrator-client prints the promoted key, the successor, or Details)
    "recover": Command(_recover("recover"), _promoted, mutates=True, timeout=RECOVERY_TIMEOUT),
    "recover-lite": Command(
        _recover("recover-lite"), _promoted, mutates=True, timeout=RECOVERY_TIMEOUT
    ),
    "force-master-failover": Command(
        lambda inv: f"force-master-failover/{inv.cluster_hint()}",
        _successor,
        mutates=True,
        timeout=RECOVERY_TIMEOUT,
    ),
    "ack-cluster-recoveries": Command(
        lambda inv: f"ack-recovery/cluster/{inv.cluster_hint()}?{_comment(inv)}",
        _plain,
        mutates=True,
    ),
    "ack-instance-recoveries": Command(
        lambda inv: f"ack-recovery/instance/{_instance(inv)}?{_comment(inv)}",
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    "ack-all-recoveries": Command(
        lambda inv: f"ack-all-recoveries?{_comment(inv)}", _plain, mutates=True
    ),
    "disable-global-recoveries": Command(
        lambda inv: "disable-global-recoveries", _plain, mutates=True
    ),
    "enable-global-recoveries": Command(
        lambda inv: "enable-global-recoveries", _plain, mutates=True
    ),
    "check-global-recoveries": Command(lambda inv: "check-global-recoveries", _plain),
    # instance and replication control (orchestrator-client prints .Details.Key)
    **{
        name: Command(_control(name), _details_key, mutates=True)
        for name in (
            "start-replica",
            "stop-replica",
            "restart-replica",
            "set-read-only",
            "set-writeable",
            "enable-semi-sync-master",
            "disable-semi-sync-master",
            "enable-semi-sync-replica",
            "disable-semi-sync-replica",
            "flush-binary-logs",
        )
    },
    # moves (orchestrator-client prints Key<MasterKey)
    "relocate": Command(_below("relocate"), _moved, mutates=True, timeout=RECOVERY_TIMEOUT),
    "move-gtid": Command(_below("move-gtid"), _moved, mutates=True, timeout=RECOVERY_TIMEOUT),
    "move-below-gtid": Command(
        _below("move-below-gtid"), _moved, mutates=True, timeout=RECOVERY_TIMEOUT
    ),
    "move-up": Command(
        lambda inv: f"move-up/{_instance(inv)}", _moved, mutates=True, timeout=RECOVERY_TIMEOUT
    ),
    "repoint": Command(_repoint, _moved, mutates=True, timeout=RECOVERY_TIMEOUT),
    "can-replicate-from": Command(_below("can-replicate-from"), _can_replicate),
    # --- more instance control (stop-replica-nice, reset-replica, skip-query, ...) ---
    **{
        name: Command(_control(name), _details_key, mutates=True, timeout=RECOVERY_TIMEOUT)
        for name in (
            "stop-replica-nice",
            "reset-replica",
            "detach-replica-master-host",
            "detach-replica",
            "reattach-replica-master-host",
            "reattach-replica",
            "skip-query",
            "gtid-errant-reset-master",
            "gtid-errant-inject-empty",
        )
    },
    "delay-replication": Command(
        lambda inv: f"delay-replication/{_instance(inv)}/{_needed(inv, 'seconds', inv.seconds)}",
        _plain,
        mutates=True,
    ),
    "purge-binary-logs": Command(
        lambda inv: (
            f"purge-binary-logs/{_instance(inv)}/"
            f"{quote(_needed(inv, 'binlog', inv.binlog), safe='')}"
        ),
        _details_key,
        mutates=True,
    ),
    "locate-gtid-errant": Command(
        lambda inv: f"locate-gtid-errant/{_instance(inv)}",
        lambda r, i: "\n".join(str(name) for name in _details(r) or []),
        timeout=RECOVERY_TIMEOUT,
    ),
    # --- end more instance control ---
    # --- moves of many replicas (relocate-replicas, take-master, make-co-master, ...) ---
    # lists print one key per line of Details (move-replicas-gtid: the destination, its Details)
    **{
        name: Command(_many(name, below), _listed, mutates=True, timeout=RECOVERY_TIMEOUT)
        for name, below in (
            ("relocate-replicas", True),
            ("move-replicas-gtid", True),
            ("move-up-replicas", False),
            ("repoint-replicas", False),
        )
    },
    # the instance below its master, Key<MasterKey (``enslave-*``: see SYNONYMS)
    **{
        name: Command(_control(route), _moved, mutates=True, timeout=RECOVERY_TIMEOUT)
        for name, route in {
            "take-siblings": "take-siblings",
            "take-master": "take-master",
            "make-co-master": "make-co-master",
        }.items()
    },
    # "<promoted> lost: N, moved: N", from the Message "promoted replica: <key>, lost: ..."
    **{
        name: Command(
            _control(name),
            lambda r, i: (
                str(r.get("Message", "") if isinstance(r, dict) else "")
                .removeprefix("promoted replica: ")
                .replace(", lost:", " lost:", 1)
            ),
            mutates=True,
            timeout=RECOVERY_TIMEOUT,
        )
        for name in ("regroup-replicas", "regroup-replicas-gtid")
    },
    # --- end moves of many replicas ---
    # --- maintenance and tags ---
    # (orchestrator-client prints the instance key; in-maintenance prints it only when locked)
    "begin-maintenance": Command(
        lambda inv: (
            _comment(inv)  # --reason is required
            and f"begin-maintenance/{_instance(inv)}/{quote(inv.owner, safe='')}/"
            f"{quote(inv.reason, safe='')}"
            + (f"?duration={quote(inv.duration, safe='')}" if inv.duration else "")
        ),
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    "end-maintenance": Command(
        lambda inv: f"end-maintenance/{_instance(inv)}",
        lambda r, i: str(i.need_instance()),
        mutates=True,
    ),
    "in-maintenance": Command(
        lambda inv: f"in-maintenance/{_instance(inv)}",
        lambda r, i: str(_details(r) or "") if r.get("Message") == "true" else "",
    ),
    "maintenance": Command(  # one line per lock: key, id, owner, reason (tab-separated)
        lambda inv: "maintenance",
        lambda r, i: "\n".join(
            f"{key_text(m['Key'])}\t{m['MaintenanceId']}\t{m['Owner']}\t{m['Reason']}" for m in r
        ),
    ),
    "tags": Command(lambda inv: f"tags/{_instance(inv)}", lambda r, i: "\n".join(r)),
    "tag-value": Command(
        lambda inv: f"tag-value/{_instance(inv)}?tag={quote(inv.tag, safe='')}",
        lambda r, i: str(r),
    ),
    "tagged": Command(
        lambda inv: f"tagged/?tag={quote(inv.tag, safe='')}",  # orchestrator-client's path
        lambda r, i: "\n".join(key_text(k) for k in r),
    ),
    "tag": Command(
        lambda inv: f"tag/{_instance(inv)}?tag={quote(inv.tag, safe='')}",
        lambda r, i: key_text(_details(r)),
        mutates=True,
    ),
    "untag": Command(
        lambda inv: f"untag/{_instance(inv)}?tag={quote(inv.tag, safe='')}",
        lambda r, i: "\n".join(key_text(k) for k in _details(r) or []),
        mutates=True,
    ),
    "untag-all": Command(
        lambda inv: f"untag-all?tag={quote(inv.tag, safe='')}",
        lambda r, i: "\n".join(key_text(k) for k in _details(r) or []),
        mutates=True,
    ),
    "topology-tags": Command(
        lambda inv: f"topology-tags/{inv.cluster_hint()}", lambda r, i: str(_details(r))
    ),
    # --- end maintenance and tags ---
    # --- takeovers ---
    "graceful-master-takeover": Command(
        _takeover("graceful-master-takeover"), _successor, mutates=True, timeout=RECOVERY_TIMEOUT
    ),
    "graceful-master-takeover-auto": Command(
        _takeover("graceful-master-takeover-auto"),
        _successor,
        mutates=True,
        timeout=RECOVERY_TIMEOUT,
    ),
    "force-master-takeover": Command(
        _takeover("force-master-takeover", designated=True),
        _successor,
        mutates=True,
        timeout=RECOVERY_TIMEOUT,
    ),
    # --- end takeovers ---
    # --- section 3 (issue 10) ---
    # move-below -i replica -d sibling (or -s sibling): a GTID move below a sibling; Key<MasterKey
    "move-below": Command(_below("move-below"), _moved, mutates=True, timeout=RECOVERY_TIMEOUT),
    # enable-gtid / disable-gtid -i replica: orchestrator-client prints .Details.Key
    **{
        name: Command(_control(name), _details_key, mutates=True, timeout=RECOVERY_TIMEOUT)
        for name in ("enable-gtid", "disable-gtid")
    },
    # dump-config is answered by the client itself (client.LOCAL_COMMANDS), without the API
    # --- end section 3 ---
    # --- orchestrator-client compatibility (issue 10) ---
    **{
        name: Command(spec.path, spec.output, mutates=spec.mutates)
        for name, spec in compat.SPECS.items()
    },
    # --- end orchestrator-client compatibility ---
}


# orchestrator's older names that the slave -> replica rule does not turn into ours
SYNONYMS = {"enslave-siblings": "take-siblings", "enslave-master": "take-master"}
