"""The recovery workers' /metrics (``RecoveryMetricsListenAddress``): the whole stack on a real
sandbox, etcd and nats-server; each worker serves its counters (bugs caught, commands refused
busy or failed, events dropped, snapshots refused) and whether it leads: exactly one does."""

from __future__ import annotations

import json

import pytest

from tests.harness.ports import free_ports
from tests.harness.process import http_get
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_takeover import ready

pytestmark = pytest.mark.integration

COUNTERS = (
    "orchestrator_recovery_command_failures_total",
    "orchestrator_recovery_commands_refused_busy_total",
    "orchestrator_recovery_events_dropped_total",
    "orchestrator_recovery_snapshots_refused_total",
)


def scrape(address: str) -> dict[str, float]:
    """The ``orchestrator_recovery_*`` values on the worker's /metrics at ``host:port``."""
    answer = http_get(f"http://{address}/metrics")
    assert answer is not None and answer[0] == 200, answer
    values = {}
    for line in answer[1].decode().splitlines():
        if line.startswith("orchestrator_recovery_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def two_workers_listening(make_stack: StackFactory) -> list[int]:
    """The stack, its two workers serving /metrics, /health and /ready: their ports."""
    ports = free_ports(2)
    ready(
        make_stack,
        per_service={
            f"recovery-{n}": {"RecoveryMetricsListenAddress": f"127.0.0.1:{port}"}
            for n, port in zip((1, 2), ports, strict=True)
        },
    )
    return ports


def test_each_worker_serves_its_counters_and_one_leads(make_stack: StackFactory) -> None:
    ports = two_workers_listening(make_stack)

    def one_leads() -> bool:
        leading = (scrape(f"127.0.0.1:{port}")["orchestrator_recovery_leading"] for port in ports)
        return sum(leading) == 1

    wait_until(one_leads, timeout=15, what="exactly one worker leading on /metrics")
    for port in ports:
        values = scrape(f"127.0.0.1:{port}")
        for counter in COUNTERS:
            assert values[counter] == 0, (port, counter, values)


def test_each_worker_is_alive_and_ready_once_it_has_read_the_fleet(
    make_stack: StackFactory,
) -> None:
    """The metrics listener answers Kubernetes' probes too: /health while the worker's event
    loop turns, /ready once it is connected to NATS and etcd and has read the fleet."""
    ports = two_workers_listening(make_stack)
    for port in ports:
        for path, state in (("health", "alive"), ("ready", "ready")):
            answer = http_get(f"http://127.0.0.1:{port}/{path}")
            assert answer is not None, (port, path)
            assert (answer[0], json.loads(answer[1])) == (200, {"status": state}), (port, path)
