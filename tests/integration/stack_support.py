"""The whole stack as separate processes for the integration tests (``make_stack`` fixture in
conftest.py): a real 4-node MariaDB sandbox, nats-server, etcd, discovery, topology-api and two
recovery workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator_cli.sandbox import Sandbox, SandboxTLS
from orchestrator_shared.command_signing import generate_key
from tests.harness.ports import free_port, free_ports
from tests.harness.process import metric_samples
from tests.integration.test_stack import start, stop

TOPOLOGY = {"MySQLTopologyUser": "orchestrator", "MySQLTopologyPassword": "orch_topology"}


@dataclass
class Stack:
    sandbox: Sandbox
    api: str
    nats_url: str
    workers: list[subprocess.Popen[bytes]]
    nats: Any
    etcd: Any
    api_process: subprocess.Popen[bytes] | None = None
    # every process of the stack (discovery, the API, the workers), in start order
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    signing_key: str = ""  # CommandSigningKey of the API and the workers


StackFactory = Callable[..., Stack]


def run_once(
    module: str, config: dict[str, Any], directory: Path, *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m module --config FILE`` with ``config`` written to FILE, to its end (a
    service that stops at start-up)."""
    path = directory / "orchestrator.conf.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def stack_factory(
    sandbox_factory: Callable[..., Sandbox], nats_server: Any, etcd_server: Any, tmp_path: Path
) -> Iterator[StackFactory]:
    """Starts a sandbox (``chain``, ``semi_sync``, ``galera``) and the stack with ``settings``
    added."""
    processes: list[subprocess.Popen[bytes]] = []

    def make(
        *,
        chain: bool = False,
        semi_sync: bool = False,
        sandbox_tls: SandboxTLS | None = None,
        prepare: Callable[[Sandbox], dict[str, dict[str, Any]] | None] | None = None,
        environment: dict[str, str] | None = None,
        per_service: dict[str, dict[str, Any]] | None = None,
        more_seeds: tuple[str, ...] = (),
        galera: int = 0,
        server_defaults: bool = False,
        **settings: Any,
    ) -> Stack:
        """``sandbox_tls``: the sandbox serves TLS with these files; ``prepare``: runs on the
        sandbox before any service starts (e.g. users that require TLS, a fault proxy in front
        of a node) and may return more per-service settings (which know the proxy's port);
        ``environment``: added to every service's (``ORCHESTRATOR_LOG_LEVEL`` and secrets
        given as variables); ``per_service``: settings of one service only (``discovery``,
        ``api``, ``recovery``, or one worker: ``recovery-1``, ``recovery-2``), e.g. its own
        NATS user; ``more_seeds``: discovery seeds after the sandbox's master; ``galera``:
        nodes ``0..galera-1`` form a Galera cluster, the others replicate from node 0;
        ``server_defaults``: the sandbox keeps MariaDB's own replication timeouts."""
        first = len(processes)
        sandbox = sandbox_factory(
            nodes=4,
            chain=chain,
            semi_sync=semi_sync,
            tls=sandbox_tls,
            galera=galera,
            server_defaults=server_defaults,
        )
        own = {**(per_service or {})}
        for service, extra in ((prepare(sandbox) if prepare else None) or {}).items():
            own[service] = {**own.get(service, {}), **extra}
        port = free_port()
        common = {
            **TOPOLOGY,
            "NATSServers": [nats_server.url],
            "EtcdEndpoints": [etcd_server.endpoint],
            "InstancePollSeconds": 1,
            "RecoverMasterClusterFilters": ["*"],
            "RecoverIntermediateMasterClusterFilters": ["*"],
            "CommandSigningKey": generate_key(),  # the API signs commands, workers verify
            **settings,
        }
        processes.append(
            start(
                "orchestrator_discovery.main",
                {
                    **common,
                    "DiscoverySeeds": [sandbox.master.key, *more_seeds],
                    "DiscoveryMetricsListenAddress": "",
                    **own.get("discovery", {}),
                },
                tmp_path,
                environment=environment,
            )
        )
        api_process = start(
            "orchestrator_api.main",
            {
                **common,
                "ListenAddress": f"127.0.0.1:{port}",
                "SQLite3DataFile": str(tmp_path / "orchestrator.sqlite3"),
                **own.get("api", {}),
            },
            tmp_path,
            environment=environment,
        )
        processes.append(api_process)
        workers = []
        for n in (1, 2):
            worker_dir = tmp_path / f"worker-{n}"
            worker_dir.mkdir()
            worker_config = {**common, **own.get("recovery", {}), **own.get(f"recovery-{n}", {})}
            workers.append(
                start(
                    "orchestrator_recovery.main", worker_config, worker_dir, environment=environment
                )
            )
        processes.extend(workers)
        url = f"http://127.0.0.1:{port}"
        return Stack(
            sandbox,
            url,
            nats_server.url,
            workers,
            nats_server,
            etcd_server,
            api_process,
            processes=processes[first:],
            signing_key=common["CommandSigningKey"],
        )

    try:
        yield make
    finally:
        outputs = [stop(process) for process in processes]
        for code, output in outputs:
            if code == -signal.SIGKILL:
                continue  # a worker the test killed on purpose
            assert code == 0, output
            assert "Traceback" not in output, output


def worker_metrics_listeners() -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Free loopback addresses for the two recovery workers' ``/metrics``, ``/health`` and
    ``/ready``, and the ``per_service`` settings that give them to the workers."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    per_service = {
        f"recovery-{n}": {"RecoveryMetricsListenAddress": address}
        for n, address in zip((1, 2), addresses, strict=True)
    }
    return addresses, per_service


def scrape(address: str) -> dict[str, float]:
    """The ``orchestrator_recovery_*`` samples on the worker's /metrics at ``host:port``."""
    return metric_samples(f"http://{address}/metrics", "orchestrator_recovery_")
