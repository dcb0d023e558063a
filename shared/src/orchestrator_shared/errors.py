"""The one error tree of the project.

::

    OrchestratorError                 anything this project raises on purpose
    ├── ConfigError                   a setting is missing, unknown or has a bad value
    ├── InvalidInstanceKey            text that is not a usable ``host:port``
    ├── InvalidGtid                   text that is not a MariaDB GTID position or MySQL GTID set
    ├── InvalidBinlogCoordinates      text that is not ``file:position``
    ├── ProbeError                    a MySQL/MariaDB instance could not be probed
    │   └── ProbeTimeout              ... because it did not answer before the deadline
    ├── BusError                      NATS / JetStream failed or answered with an error
    ├── StoreError                    the topology store failed
    ├── LeaseLost                     the recovery leadership was lost (fencing token stale)
    ├── OperationRefused              a topology change was refused before it touched anything
    ├── StepFailed                    a step of an operation failed after it changed an instance
    └── SandboxError                  a local MariaDB sandbox could not be started or controlled

Library errors (aiomysql, nats-py, asyncpg, aetcd) are translated into these at the adapter
boundary, so callers never catch a third-party exception type. Each error carries its message
(redacted: no password or token) plus structured fields where they help an operator (the
instance key, the setting name).
"""

from __future__ import annotations

from orchestrator_shared.redact import redact


class OrchestratorError(Exception):
    """Base of every error this project raises on purpose. Its message is redacted
    (:func:`orchestrator_shared.redact.redact`): no password or token in what it says."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(OrchestratorError):
    """A configuration value is missing or invalid. ``str()`` is one line naming the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class InvalidInstanceKey(OrchestratorError, ValueError):
    """Text that cannot be parsed as ``host:port``."""


class InvalidGtid(OrchestratorError, ValueError):
    """Text that cannot be parsed as a MariaDB GTID position or a MySQL GTID set."""


class InvalidBinlogCoordinates(OrchestratorError, ValueError):
    """Text that cannot be parsed as binlog coordinates ``file:position``."""


class ProbeError(OrchestratorError):
    """An instance could not be (fully) probed."""

    def __init__(self, instance: str, message: str, *, errno: int | None = None) -> None:
        super().__init__(f"{instance}: {message}")
        self.instance = instance
        self.message = message
        self.errno = errno


class ProbeTimeout(ProbeError):
    """The instance did not answer before the probe's deadline."""


class BusError(OrchestratorError):
    """The message bus failed or answered with an error."""


class StoreError(OrchestratorError):
    """The topology store failed."""


class LeaseLost(OrchestratorError):
    """This worker no longer holds the recovery leadership."""


class OperationRefused(OrchestratorError):
    """A topology operation was refused before it changed anything."""


class StepFailed(OrchestratorError):
    """A step of an operator command failed after the command had changed an instance (not a
    lost lease). It never leaves the command: the command catches it, undoes what it did and
    answers with an :class:`OperationRefused` that quotes it (its message is that text)."""


class SandboxError(OrchestratorError):
    """A local MariaDB sandbox could not be started, stopped or controlled."""
