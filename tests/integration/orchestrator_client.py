"""orchestrator-client, restated for the tests: for every command of it that this API serves,
the exact paths it requests and what it prints, with its error handling.

orchestrator-client (``resources/bin/orchestrator-client`` in openark/orchestrator) is a bash
script: ``curl -s`` (no ``-L``: a redirect is not followed) piped into ``jq``. This module
restates, command by command, the path it builds (``to_hostport``: ``host:port`` →
``host/port``, a missing port is 3306; ``${alias:-$instance}``; ``jq @uri`` where the script
url-encodes) and the ``jq`` filter its output goes through, with jq's semantics where they
matter (``null + ":"`` is ``":"``; ``.[]`` over an object iterates its values; indexing a
string is an error). Its ``api`` function is restated too: an array, a string or an object
without ``Code`` is the answer; ``Code: ERROR`` prints ``Message`` on stderr (and a non-null
``Details`` on stdout) and exits 1; an empty body (a redirect) parses as nothing and the
command prints nothing and exits 0, which :func:`run_client_command` reports as
``silent=True`` — the failure this emulation exists to catch.

Not restated, because this API does not serve them: ``help``, ``which-api``, ``api`` (no
endpoint), the Pseudo-GTID commands (``match``, ``match-up``, ``match-up-replicas``,
``last-pseudo-gtid``), ``move-equivalent``, ``can-replicate-from-gtid`` (Oracle GTID), the
pools (``submit-pool-instances``, ``which-heuristic-cluster-pool-instances``), the hostname
unresolve commands, ``restart-replica-statements``, ``raft-elect-leader``, and ``move-below``
(another change adds it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_PORT = 3306


class JqError(Exception):
    """What jq stops with (e.g. indexing a string)."""


@dataclass(frozen=True)
class Args:
    """The flags orchestrator-client reads (the same spellings as ``orchestrator -c``)."""

    instance: str = ""
    destination: str = ""
    alias: str = ""
    owner: str = ""
    reason: str = ""
    duration: str = "10m"
    promotion_rule: str = ""
    tag: str = ""
    seconds: str = ""
    binlog: str = ""

    @property
    def hostport(self) -> str:
        return to_hostport(self.instance)

    @property
    def destination_hostport(self) -> str:
        return to_hostport(self.destination)

    @property
    def hint(self) -> str:
        return self.alias or self.instance


_FLAGS = {
    "-i": "instance",
    "-d": "destination",
    "-s": "destination",
    "-alias": "alias",
    "--alias": "alias",
    "--owner": "owner",
    "--reason": "reason",
    "--duration": "duration",
    "--promotion-rule": "promotion_rule",
    "--tag": "tag",
    "--seconds": "seconds",
    "--binlog": "binlog",
}


def parse(argv: Sequence[str]) -> tuple[str, Args]:
    """``-c command`` and the flags (as the tests write them)."""
    values: dict[str, str] = {}
    command = ""
    items = iter(argv)
    for flag in items:
        value = next(items)
        if flag == "-c":
            command = value
        else:
            values[_FLAGS[flag]] = value
    return command.replace("slave", "replica"), Args(**values)


def to_hostport(key: str) -> str:
    if not key:
        return ""
    return key.replace(":", "/") if ":" in key else f"{key}/{DEFAULT_PORT}"


def uri(text: str) -> str:
    """``jq -s -R -r @uri``: everything but ``A-Za-z0-9-_.~`` percent-encoded."""
    return quote(text, safe="-_.~")


# --- jq ---------------------------------------------------------------------------------------


def index(value: Any, name: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise JqError(f"Cannot index {type(value).__name__} with {name!r}")
    return value.get(name)


def iterate(value: Any) -> list[Any]:
    """``.[]``."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    raise JqError(f"Cannot iterate over {json.dumps(value)}")


def tostring(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def add(*parts: Any) -> Any:
    """jq's ``+`` on strings, where null is the identity."""
    total: Any = None
    for part in parts:
        if part is None:
            continue
        if total is None:
            total = part
        elif isinstance(total, str) and isinstance(part, str):
            total += part
        else:
            raise JqError(f"cannot add {json.dumps(total)} and {json.dumps(part)}")
    return total


def raw(value: Any) -> str:
    """``jq -r .`` of one value."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2)


def print_key(value: Any) -> str:
    """``jq -r '. | (.Hostname + ":" + (.Port | tostring))'``."""
    return raw(add(index(value, "Hostname"), ":", tostring(index(value, "Port"))))


def keys(instances: Any) -> list[str]:
    """``filter_keys | print_key``: ``.[] | .Key`` then each key."""
    return [print_key(index(instance, "Key")) for instance in iterate(instances)]


def echo(value: Any) -> str:
    """``echo $api_details``: jq's pretty JSON, word-split by the shell, joined by spaces."""
    return " ".join(json.dumps(value, indent=2, ensure_ascii=False).split())


# --- the commands -----------------------------------------------------------------------------

Paths = Callable[[str, Args], list[str]]
Output = Callable[[Any, Any], list[str]]  # (the whole answer, its Details) -> lines


@dataclass(frozen=True)
class ClientCommand:
    paths: Paths
    output: Output
    leader_first: bool = False  # raft-state is asked first and must say Leader


def _one(build: Callable[[str, Args], str]) -> Paths:
    return lambda command, a: [build(command, a)]


def _instance_key(_r: Any, details: Any) -> list[str]:
    return [print_key(details)]


def _details_key(_r: Any, details: Any) -> list[str]:
    return [print_key(index(details, "Key"))]


def _moved(_r: Any, details: Any) -> list[str]:
    return [f"{print_key(index(details, 'Key'))}<{print_key(index(details, 'MasterKey'))}"]


def _successor(_r: Any, details: Any) -> list[str]:
    return [print_key(index(details, "SuccessorKey"))]


def _answer_keys(answer: Any, _d: Any) -> list[str]:
    return keys(answer)


def _details_keys(_r: Any, details: Any) -> list[str]:
    return keys(details)


def _details_raw(_r: Any, details: Any) -> list[str]:
    return [raw(details)]


def _when_threads(state: int) -> Output:
    def output(answer: Any, _d: Any) -> list[str]:
        threads = (
            index(answer, "ReplicationSQLThreadState"),
            index(answer, "ReplicationIOThreadState"),
        )
        return [print_key(index(answer, "Key"))] if threads == (state, state) else []

    return output


def _broken(instance: Any) -> bool:
    stopped = index(instance, "ReplicationSQLThreadRuning") is False or (
        index(instance, "ReplicationIOThreadRuning") is False
    )
    errors = index(instance, "LastSQLError") != "" or index(instance, "LastIOError") != ""
    return stopped and errors


def _running(instance: Any) -> bool:
    return index(instance, "ReplicationSQLThreadRuning") is True and (
        index(instance, "ReplicationIOThreadRuning") is True
    )


def _dominant_dc(answer: Any, _d: Any) -> list[str]:
    """``jq -r '.[].DataCenter' | sort | uniq -c | sort -nr | head -n 1 | awk '{print $2}'``."""
    counts = Counter(raw(index(master, "DataCenter")) for master in iterate(answer))
    if not counts:
        return []
    lines = sorted((f"{count:7d} {dc}" for dc, count in counts.items()), reverse=True)
    fields = lines[0].split()
    return [fields[1] if len(fields) > 1 else ""]


def _analysis(_r: Any, details: Any) -> list[str]:
    lines = []
    for entry in iterate(details):
        key = index(entry, "AnalyzedInstanceKey")
        head = add(
            index(key, "Hostname"),
            ":",
            tostring(index(key, "Port")),
            " (cluster ",
            index(index(entry, "ClusterDetails"), "ClusterName"),
            "): ",
        )
        code = index(entry, "Analysis")
        if code == "NoProblem":
            structure = index(entry, "StructureAnalysis")
            code = structure[0] if isinstance(structure, list) and structure else None
        lines.append(raw(add(head, code)))
    return lines


def _can_replicate(answer: Any, details: Any) -> list[str]:
    return [print_key(details)] if "true" in raw(index(answer, "Message")) else []


def _hint_route(route: str) -> Paths:
    return lambda _c, a: [f"{route}/{a.hint}"]


def _general_relocate(command: str, a: Args) -> str:
    return f"{command}/{a.hostport}/{a.destination_hostport}"


def _takeover(command: str, a: Args) -> str:
    base = f"{command}/{a.hint}"
    return f"{base}/{a.destination_hostport}" if a.destination else base


_INSTANCE_COMMANDS = (
    "stop-replica",
    "stop-replica-nice",
    "start-replica",
    "restart-replica",
    "reset-replica",
    "detach-replica",
    "reattach-replica",
    "detach-replica-master-host",
    "reattach-replica-master-host",
    "skip-query",
    "gtid-errant-reset-master",
    "gtid-errant-inject-empty",
    "enable-semi-sync-master",
    "disable-semi-sync-master",
    "enable-semi-sync-replica",
    "disable-semi-sync-replica",
    "set-read-only",
    "set-writeable",
    "flush-binary-logs",
)

CLIENT: dict[str, ClientCommand] = {
    "async-discover": ClientCommand(
        _one(lambda c, a: f"async-discover/{a.hostport}"), _details_key
    ),
    "discover": ClientCommand(_one(lambda c, a: f"discover/{a.hostport}"), _details_key),
    "forget": ClientCommand(_one(lambda c, a: f"forget/{a.hostport}"), lambda r, d: []),
    "forget-cluster": ClientCommand(_hint_route("forget-cluster"), lambda r, d: []),
    "topology": ClientCommand(_hint_route("topology"), _details_raw),
    "topology-tabulated": ClientCommand(_hint_route("topology-tabulated"), _details_raw),
    "topology-tags": ClientCommand(_hint_route("topology-tags"), _details_raw),
    "snapshot-topologies": ClientCommand(_one(lambda c, a: "snapshot-topologies"), _details_raw),
    "clusters": ClientCommand(
        _one(lambda c, a: "clusters-info"),
        lambda r, d: [raw(index(c, "ClusterName")) for c in iterate(r)],
    ),
    "clusters-alias": ClientCommand(
        _one(lambda c, a: "clusters-info"),
        lambda r, d: [
            raw(add(index(c, "ClusterName"), ",", index(c, "ClusterAlias"))) for c in iterate(r)
        ],
    ),
    "search": ClientCommand(_one(lambda c, a: f"search?s={uri(a.instance)}"), _answer_keys),
    "instance": ClientCommand(
        _one(lambda c, a: f"instance/{a.hostport}"), lambda r, d: [print_key(index(r, "Key"))]
    ),
    "which-master": ClientCommand(
        _one(lambda c, a: f"instance/{a.hostport}"),
        lambda r, d: [print_key(index(r, "MasterKey"))],
    ),
    "which-replicas": ClientCommand(
        _one(lambda c, a: f"instance-replicas/{a.hostport}"), _answer_keys
    ),
    "which-broken-replicas": ClientCommand(
        _one(lambda c, a: f"instance-replicas/{a.hostport}"),
        lambda r, d: keys([replica for replica in iterate(r) if _broken(replica)]),
    ),
    "which-cluster-instances": ClientCommand(_hint_route("cluster"), _answer_keys),
    "which-cluster": ClientCommand(
        _hint_route("cluster-info"), lambda r, d: [raw(index(r, "ClusterName"))]
    ),
    "which-cluster-alias": ClientCommand(
        _hint_route("cluster-info"), lambda r, d: [raw(index(r, "ClusterAlias"))]
    ),
    "which-cluster-master": ClientCommand(
        _hint_route("master"), lambda r, d: [raw(index(r, "ClusterName"))]
    ),
    "all-clusters-masters": ClientCommand(_one(lambda c, a: "masters"), _answer_keys),
    "all-instances": ClientCommand(_one(lambda c, a: "all-instances"), _answer_keys),
    "which-cluster-osc-replicas": ClientCommand(_hint_route("cluster-osc-replicas"), _answer_keys),
    "which-cluster-osc-running-replicas": ClientCommand(
        _hint_route("cluster-osc-replicas"),
        lambda r, d: keys([replica for replica in iterate(r) if _running(replica)]),
    ),
    "downtimed": ClientCommand(_hint_route("downtimed"), _answer_keys),
    "dominant-dc": ClientCommand(_one(lambda c, a: "masters"), _dominant_dc),
    "submit-masters-to-kv-stores": ClientCommand(
        _one(lambda c, a: f"submit-masters-to-kv-stores/{a.alias}"),
        lambda r, d: [raw(add(index(p, "Key"), ":", index(p, "Value"))) for p in iterate(d)],
    ),
    **{
        name: ClientCommand(_one(_general_relocate), _moved)
        for name in ("relocate", "move-gtid", "repoint")
    },
    **{
        name: ClientCommand(_one(lambda c, a: f"{c}/{a.hostport}"), _moved)
        for name in ("move-up", "make-co-master", "take-master", "take-siblings")
    },
    **{
        name: ClientCommand(_one(_general_relocate), _details_keys)
        for name in ("relocate-replicas", "move-replicas-gtid")
    },
    **{  # general_singular_relocate_replicas_command: path/h/p/<destination or nothing>
        name: ClientCommand(_one(_general_relocate), _details_keys)
        for name in ("move-up-replicas", "repoint-replicas")
    },
    "tags": ClientCommand(
        _one(lambda c, a: f"tags/{a.hostport}"), lambda r, d: [raw(t) for t in iterate(r)]
    ),
    "tag-value": ClientCommand(
        _one(lambda c, a: f"tag-value/{a.hostport}?tag={uri(a.tag)}"), lambda r, d: [raw(r)]
    ),
    "tag": ClientCommand(_one(lambda c, a: f"tag/{a.hostport}?tag={uri(a.tag)}"), _instance_key),
    "untag": ClientCommand(
        _one(lambda c, a: f"untag/{a.hostport}?tag={a.tag}"),
        lambda r, d: [print_key(k) for k in iterate(d)],
    ),
    "untag-all": ClientCommand(
        _one(lambda c, a: f"untag-all?tag={a.tag}"),
        lambda r, d: [print_key(k) for k in iterate(d)],
    ),
    "tagged": ClientCommand(
        _one(lambda c, a: f"tagged/{a.hostport}?tag={uri(a.tag)}"),
        lambda r, d: [print_key(k) for k in iterate(r)],
    ),
    "begin-downtime": ClientCommand(
        _one(
            lambda c, a: f"begin-downtime/{a.hostport}/{uri(a.owner)}/{uri(a.reason)}/{a.duration}"
        ),
        _instance_key,
    ),
    "end-downtime": ClientCommand(_one(lambda c, a: f"end-downtime/{a.hostport}"), _instance_key),
    "begin-maintenance": ClientCommand(
        _one(lambda c, a: f"begin-maintenance/{a.hostport}/{uri(a.owner)}/{uri(a.reason)}"),
        _instance_key,
    ),
    "end-maintenance": ClientCommand(
        _one(lambda c, a: f"end-maintenance/{a.hostport}"), _instance_key
    ),
    "register-candidate": ClientCommand(
        _one(lambda c, a: f"register-candidate/{a.hostport}/{a.promotion_rule}"), _instance_key
    ),
    **{
        name: ClientCommand(_one(lambda c, a: f"{c}/{a.hostport}"), _details_key)
        for name in _INSTANCE_COMMANDS
    },
    "which-gtid-errant": ClientCommand(
        _one(lambda c, a: f"instance/{a.hostport}"), lambda r, d: [raw(index(r, "GtidErrant"))]
    ),
    "locate-gtid-errant": ClientCommand(
        _one(lambda c, a: f"locate-gtid-errant/{a.hostport}"),
        lambda r, d: [raw(name) for name in iterate(d)],
    ),
    "delay-replication": ClientCommand(
        _one(lambda c, a: f"delay-replication/{a.hostport}/{a.seconds}"),
        lambda r, d: [echo(d)],
    ),
    "can-replicate-from": ClientCommand(_one(_general_relocate), _can_replicate),
    "is-replicating": ClientCommand(_one(lambda c, a: f"instance/{a.hostport}"), _when_threads(1)),
    "is-replication-stopped": ClientCommand(
        _one(lambda c, a: f"instance/{a.hostport}"), _when_threads(0)
    ),
    "purge-binary-logs": ClientCommand(
        _one(lambda c, a: f"purge-binary-logs/{a.hostport}/{a.binlog}"), _details_key
    ),
    "recover": ClientCommand(_one(lambda c, a: f"recover/{a.hostport}"), _instance_key),
    "graceful-master-takeover": ClientCommand(_one(_takeover), _successor),
    "graceful-master-takeover-auto": ClientCommand(_one(_takeover), _successor),
    "force-master-failover": ClientCommand(_hint_route("force-master-failover"), _successor),
    "force-master-takeover": ClientCommand(
        _one(lambda c, a: f"{c}/{a.hint}/{a.destination_hostport}"), _successor
    ),
    "ack-cluster-recoveries": ClientCommand(
        _one(lambda c, a: f"ack-recovery/cluster/{a.hint}?comment={uri(a.reason)}"), _details_raw
    ),
    "ack-all-recoveries": ClientCommand(
        _one(lambda c, a: f"ack-all-recoveries?comment={uri(a.reason)}"), _details_raw
    ),
    **{
        name: ClientCommand(_one(lambda c, a: c), _details_raw)
        for name in (
            "disable-global-recoveries",
            "enable-global-recoveries",
            "check-global-recoveries",
        )
    },
    "replication-analysis": ClientCommand(_one(lambda c, a: "replication-analysis"), _analysis),
    "raft-leader": ClientCommand(
        lambda c, a: ["raft-state", "raft-leader"], lambda r, d: [raw(r)], leader_first=True
    ),
    "raft-health": ClientCommand(_one(lambda c, a: "raft-health"), lambda r, d: [raw(r)]),
    "raft-leader-hostname": ClientCommand(
        lambda c, a: ["raft-state", "status"],
        lambda r, d: [raw(index(d, "Hostname"))],
        leader_first=True,
    ),
}
CLIENT["which-instance"] = CLIENT["instance"]


# --- running a command ------------------------------------------------------------------------


@dataclass
class ClientRun:
    """What orchestrator-client did: its exit code and output, the paths it asked for (below
    ``.../api/``) and the answers (status, body)."""

    exit_code: int = 0
    stdout: list[str] = field(default_factory=list)
    stderr: str = ""
    paths: list[str] = field(default_factory=list)
    answers: list[tuple[int, bytes]] = field(default_factory=list)
    silent: bool = False  # an empty answer (a redirect): nothing printed, exit 0
    problems: list[str] = field(default_factory=list)  # redirects, non-JSON answers


def run_client_command(http: httpx.Client, api: str, argv: Sequence[str]) -> ClientRun:
    """orchestrator-client's run of ``argv`` against ``api`` (``.../api``), with ``http``
    (which must not follow redirects)."""
    command, args = parse(argv)
    spec = CLIENT[command]
    run = ClientRun()
    answer: Any = None
    details: Any = None
    for position, path in enumerate(spec.paths(command, args)):
        reply = http.get(f"{api}/{path}")
        run.paths.append(path)
        run.answers.append((reply.status_code, reply.content))
        if reply.is_redirect or not reply.content.strip():
            run.problems.append(f"{path}: HTTP {reply.status_code} with an empty body")
            run.silent = True
            return run
        try:
            answer = reply.json()
        except ValueError:
            run.problems.append(f"{path}: not JSON (HTTP {reply.status_code})")
            run.exit_code = 1
            return run
        if isinstance(answer, dict) and "Code" in answer:
            details = answer.get("Details")
            if answer["Code"] == "ERROR":
                run.stderr = str(answer.get("Message", "")).replace("'", "")
                if details is not None:
                    run.stdout = [echo(details)]
                run.exit_code = 1
                return run
        if spec.leader_first and position == 0 and "Leader" not in raw(answer):
            run.stderr = "Cannot determine raft state"
            run.exit_code = 1
            return run
    try:
        run.stdout = spec.output(answer, details)
    except JqError as exc:
        run.stderr = f"jq: error: {exc}"
        run.exit_code = 5  # the pipeline's status under the script's pipefail
    return run


def printed(lines: Iterable[str]) -> str:
    """The client's stdout as text, without the final newline (an empty line is nothing)."""
    return "\n".join(lines).rstrip("\n")


__all__ = ["CLIENT", "ClientRun", "parse", "printed", "run_client_command"]
