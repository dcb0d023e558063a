"""A local MariaDB replication sandbox for tests, benchmarks and demos.

::

    with Sandbox.up(tmp_path, nodes=4, base_port=22306) as sandbox:
        sandbox.execute(0, "INSERT INTO sandbox.t (note) VALUES ('hello')")
        print(sandbox.status())

See ``docs/sandbox.md`` for what it builds and the ``orchestrator sandbox`` commands.
"""

from orchestrator_cli.sandbox.config import (
    REPLICATION_PASSWORD,
    REPLICATION_USER,
    TOPOLOGY_PASSWORD,
    TOPOLOGY_USER,
    SandboxOptions,
    SandboxTLS,
)
from orchestrator_cli.sandbox.sandbox import Sandbox, SandboxNode

__all__ = [
    "REPLICATION_PASSWORD",
    "REPLICATION_USER",
    "TOPOLOGY_PASSWORD",
    "TOPOLOGY_USER",
    "Sandbox",
    "SandboxNode",
    "SandboxOptions",
    "SandboxTLS",
]
