"""What a hook is told: ``{placeholders}`` in its command text and ``ORC_*`` environment variables.

Both carry orchestrator's full set (reference §4.5, ``prepareCommand`` and
``applyEnvironmentVariables``), with the same names and the same value formats: booleans are
``true``/``false``, instance lists are comma-separated ``host:port``, binlog coordinates are
``file:pos``. As in orchestrator, the successor placeholders (``{successorHost}``,
``{successorPort}``, ``{successorAlias}``, ``{successorBinlogCoordinates}``) are replaced only once
a successor is known, otherwise they stay in the command literally; the ``ORC_SUCCESSOR_*``
variables are then absent. Of the worker's own environment a hook gets only ``PATH``, ``HOME``,
``LANG``, ``LC_ALL``, ``TZ``, ``USER``, ``LOGNAME``, ``SHELL``, ``TMPDIR`` and the names listed in
``HookEnvironmentPassThrough`` (never its passwords); ``ORC_*`` variables inherited from it are
removed, so a hook never sees a stale value.

Substitution is one pass (a value that happens to contain ``{failedHost}`` is not substituted
again) and is not a shell-injection hole:

* a value made only of *plain* characters (ASCII letters, digits and ``_ . , : / @ + = % -``) is
  inserted as it is, exactly as orchestrator does. Every hostname, port, analysis code, cluster
  name, recovery UID, count and boolean is plain;
* any other value (a failure description with spaces or ``;``, an alias read from a database
  table, an IPv6 list with brackets) is inserted as a reference to its ``ORC_*`` variable,
  quoted for where the placeholder stands: ``"${ORC_X}"`` outside quotes, ``${ORC_X}`` inside
  double quotes, ``'"${ORC_X}"'`` inside single quotes. bash never parses the result of a
  variable expansion as code, so the hook receives the exact value as one word, whatever
  characters it holds, and an operator's existing ``"{failureDescription}"`` keeps working.

Not covered: a command that parses text again (``eval``, ``ssh host "... {x} ..."``,
``bash -c "... {x} ..."``) re-reads the value as code there, as it would in orchestrator.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from orchestrator_shared.binlog import BinlogCoordinates
from orchestrator_shared.instance_key import InstanceKey

__all__ = [
    "ENV_PREFIX",
    "HookContext",
    "hook_environment",
    "placeholder_values",
    "substitute_placeholders",
]

ENV_PREFIX = "ORC_"
"""Every variable this module sets starts with it; inherited ones with it are removed."""

_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+=%-]*")
_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")

# placeholder name -> the environment variable holding the same value (None: orchestrator sets
# none; those values are numbers, always plain).
_ENV_OF_PLACEHOLDER: dict[str, str | None] = {
    "failureType": "ORC_FAILURE_TYPE",
    "instanceType": "ORC_INSTANCE_TYPE",
    "isMaster": "ORC_IS_MASTER",
    "isCoMaster": "ORC_IS_CO_MASTER",
    "failureDescription": "ORC_FAILURE_DESCRIPTION",
    "command": "ORC_COMMAND",
    "failedHost": "ORC_FAILED_HOST",
    "failedPort": "ORC_FAILED_PORT",
    "failureCluster": "ORC_FAILURE_CLUSTER",
    "failureClusterAlias": "ORC_FAILURE_CLUSTER_ALIAS",
    "failureClusterDomain": "ORC_FAILURE_CLUSTER_DOMAIN",
    "countReplicas": "ORC_COUNT_REPLICAS",
    "countSlaves": "ORC_COUNT_REPLICAS",
    "isDowntimed": "ORC_IS_DOWNTIMED",
    "autoMasterRecovery": "ORC_AUTO_MASTER_RECOVERY",
    "autoIntermediateMasterRecovery": "ORC_AUTO_INTERMEDIATE_MASTER_RECOVERY",
    "orchestratorHost": "ORC_ORCHESTRATOR_HOST",
    "recoveryUID": "ORC_RECOVERY_UID",
    "isSuccessful": "ORC_IS_SUCCESSFUL",
    "successorHost": "ORC_SUCCESSOR_HOST",
    "successorPort": "ORC_SUCCESSOR_PORT",
    "successorBinlogCoordinates": "ORC_SUCCESSOR_BINLOG_COORDINATES",
    "successorAlias": "ORC_SUCCESSOR_ALIAS",
    "lostReplicas": "ORC_LOST_REPLICAS",
    "lostSlaves": "ORC_LOST_REPLICAS",
    "countLostReplicas": None,
    "replicaHosts": "ORC_REPLICA_HOSTS",
    "slaveHosts": "ORC_REPLICA_HOSTS",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HookContext:
    """Everything a hook may be told about one detection or recovery (orchestrator's
    ``TopologyRecovery`` and its ``AnalysisEntry``, as far as hooks read them).

    ``successor`` is None until a replica has been promoted (for a graceful takeover, the
    designated replica); ``is_successful`` follows from it, as in orchestrator.
    """

    failure_type: str
    """The analysis code, e.g. ``DeadMaster``."""
    failure_description: str
    failed: InstanceKey
    """The analysed (failed) instance."""
    failure_cluster: str
    """The cluster name (the master's ``host:port``)."""
    failure_cluster_alias: str = ""
    failure_cluster_domain: str = ""
    is_master: bool = False
    is_co_master: bool = False
    command_hint: str = ""
    """``force-master-failover``, ``force-master-takeover``, ``graceful-master-takeover``
    or empty."""
    count_replicas: int = 0
    is_downtimed: bool = False
    auto_master_recovery: bool = False
    """Whether the cluster matches ``RecoverMasterClusterFilters``."""
    auto_intermediate_master_recovery: bool = False
    """Whether the cluster matches ``RecoverIntermediateMasterClusterFilters``."""
    orchestrator_host: str = ""
    """The host name of the worker running the hook."""
    recovery_uid: str = ""
    replicas: tuple[InstanceKey, ...] = ()
    """The failed instance's replicas."""
    lost_replicas: tuple[InstanceKey, ...] = ()
    """Replicas that could not be made to follow the successor."""
    successor: InstanceKey | None = None
    successor_alias: str = ""
    successor_binlog_coordinates: BinlogCoordinates | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    """``ORC_*`` variables set over the ones derived from the fields above (only
    ``PostTakeMasterProcesses`` uses it: orchestrator's take-master hook sets
    ``ORC_SUCCESSOR_HOST`` and ``ORC_FAILED_HOST`` to ``host:port``)."""

    @property
    def is_successful(self) -> bool:
        """Whether a successor is known (orchestrator: ``SuccessorKey != nil``)."""
        return self.successor is not None

    @property
    def instance_type(self) -> str:
        """``co-master``, ``master`` or ``intermediate-master`` (orchestrator's
        ``GetAnalysisInstanceType``; group members are not handled by this project)."""
        if self.is_co_master:
            return "co-master"
        if self.is_master:
            return "master"
        return "intermediate-master"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _key_list(keys: tuple[InstanceKey, ...]) -> str:
    return ",".join(str(key) for key in keys)


def placeholder_values(context: HookContext) -> dict[str, str]:
    """Each placeholder name (without braces) that is substituted for this context -> its value.

    The successor placeholders are present only when a successor is known, and
    ``successorBinlogCoordinates`` only when its coordinates are known as well.
    """
    lost = _key_list(context.lost_replicas)
    replicas = _key_list(context.replicas)
    values = {
        "failureType": context.failure_type,
        "instanceType": context.instance_type,
        "isMaster": _flag(context.is_master),
        "isCoMaster": _flag(context.is_co_master),
        "failureDescription": context.failure_description,
        "command": context.command_hint,
        "failedHost": context.failed.host,
        "failedPort": str(context.failed.port),
        "failureCluster": context.failure_cluster,
        "failureClusterAlias": context.failure_cluster_alias,
        "failureClusterDomain": context.failure_cluster_domain,
        "countReplicas": str(context.count_replicas),
        "countSlaves": str(context.count_replicas),
        "isDowntimed": _flag(context.is_downtimed),
        "autoMasterRecovery": _flag(context.auto_master_recovery),
        "autoIntermediateMasterRecovery": _flag(context.auto_intermediate_master_recovery),
        "orchestratorHost": context.orchestrator_host,
        "recoveryUID": context.recovery_uid,
        "isSuccessful": _flag(context.is_successful),
        "lostReplicas": lost,
        "lostSlaves": lost,
        "countLostReplicas": str(len(context.lost_replicas)),
        "replicaHosts": replicas,
        "slaveHosts": replicas,
    }
    if context.successor is not None:
        values["successorHost"] = context.successor.host
        values["successorPort"] = str(context.successor.port)
        values["successorAlias"] = context.successor_alias
        if context.successor_binlog_coordinates is not None:
            values["successorBinlogCoordinates"] = str(context.successor_binlog_coordinates)
    return values


# what a hook inherits from the worker's environment, besides HookEnvironmentPassThrough
INHERITED_VARIABLES = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR")


def hook_environment(
    context: HookContext,
    base: Mapping[str, str] | None = None,
    *,
    pass_through: Sequence[str] = (),
) -> dict[str, str]:
    """The allow-listed variables of ``base`` (default: this process's environment):
    ``INHERITED_VARIABLES`` and the names in ``pass_through`` (never an ``ORC_*`` one), plus
    the ``ORC_*`` variables of ``context``. Nothing else: the worker's passwords and tokens stay
    in the worker."""
    inherited = os.environ if base is None else base
    allowed = {*INHERITED_VARIABLES, *pass_through}
    env = {
        name: value
        for name, value in inherited.items()
        if name in allowed and not name.startswith(ENV_PREFIX)
    }
    for placeholder, value in placeholder_values(context).items():
        variable = _ENV_OF_PLACEHOLDER[placeholder]
        if variable is not None:
            env[variable] = value
    env.update(context.environment)
    return env


class _Quoting(Enum):
    NONE = "none"
    SINGLE = "single"
    DOUBLE = "double"


def _quoting_after(text: str, state: _Quoting) -> _Quoting:
    """The quoting in force after ``text`` when it starts in ``state``.

    Only ``'``, ``"`` and backslash are followed; ``$'...'``, ``$(...)``, backquotes and heredocs
    are not. A wrong guess only changes how a non-plain value is quoted, never whether it can
    run as code: it is always inserted as a variable reference.
    """
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif state is _Quoting.SINGLE:
            if char == "'":
                state = _Quoting.NONE
        elif char == "\\":
            escaped = True
        elif state is _Quoting.DOUBLE:
            if char == '"':
                state = _Quoting.NONE
        elif char == "'":
            state = _Quoting.SINGLE
        elif char == '"':
            state = _Quoting.DOUBLE
    return state


def _reference(variable: str, quoting: _Quoting) -> str:
    if quoting is _Quoting.DOUBLE:
        return "${" + variable + "}"
    if quoting is _Quoting.SINGLE:
        return "'\"${" + variable + "}\"'"
    return '"${' + variable + '}"'


def _neutralized(value: str) -> str:
    """A non-plain value that has no variable of its own to refer to: every non-plain
    character becomes ``_``. (Only a host name in ``PostTakeMasterProcesses``, whose
    ``ORC_*_HOST`` variables hold ``host:port``, could take this path; host names are plain.)"""
    return "".join(char if _PLAIN_VALUE.fullmatch(char) else "_" for char in value)


def substitute_placeholders(command: str, context: HookContext) -> str:
    """``command`` with every known ``{placeholder}`` replaced (see the module docstring for
    how values that are not plain are inserted). Unknown ``{words}`` and the successor
    placeholders without a successor are left as they are."""
    values = placeholder_values(context)
    parts: list[str] = []
    quoting = _Quoting.NONE
    position = 0
    for match in _PLACEHOLDER.finditer(command):
        name = match.group(1)
        if name not in values:
            continue
        before = command[position : match.start()]
        quoting = _quoting_after(before, quoting)
        parts.append(before)
        value = values[name]
        variable = _ENV_OF_PLACEHOLDER[name]
        if _PLAIN_VALUE.fullmatch(value):
            parts.append(value)
        elif variable is not None and variable not in context.environment:
            parts.append(_reference(variable, quoting))
        else:
            parts.append(_neutralized(value))
        position = match.end()
    parts.append(command[position:])
    return "".join(parts)
