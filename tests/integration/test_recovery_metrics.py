"""The recovery workers' /metrics (``RecoveryMetricsListenAddress``): the whole stack on a real
sandbox, etcd and nats-server; each worker serves its counters (bugs caught, commands refused
busy or failed, events dropped, snapshots refused) and whether it leads: exactly one does.
Recoveries and operations counted, phases timed: after a real failover in
test_recovery_stack.py (test_operations_through_the_api_reach_the_active_worker)."""

from __future__ import annotations

import json

import pytest

from tests.harness.process import http_get
from tests.integration.stack_support import StackFactory, scrape, worker_metrics_listeners
from tests.integration.test_recovery_stack import wait_until
from tests.integration.test_takeover import ready

pytestmark = pytest.mark.integration

COUNTERS = (
    "orchestrator_recovery_command_failures_total",
    "orchestrator_recovery_commands_refused_busy_total",
    "orchestrator_recovery_events_dropped_total",
    "orchestrator_recovery_snapshots_refused_total",
)


def two_workers_listening(make_stack: StackFactory) -> list[str]:
    """The stack, its two workers serving /metrics, /health and /ready: their addresses."""
    addresses, per_service = worker_metrics_listeners()
    ready(make_stack, per_service=per_service)
    return addresses


def test_each_worker_serves_its_counters_and_one_leads(make_stack: StackFactory) -> None:
    addresses = two_workers_listening(make_stack)

    def one_leads() -> bool:
        return sum(scrape(address)["orchestrator_recovery_leading"] for address in addresses) == 1

    wait_until(one_leads, timeout=15, what="exactly one worker leading on /metrics")
    for address in addresses:
        values = scrape(address)
        for counter in COUNTERS:
            assert values[counter] == 0, (address, counter, values)


def test_each_worker_is_alive_and_ready_once_it_has_read_the_fleet(
    make_stack: StackFactory,
) -> None:
    """The metrics listener answers Kubernetes' probes too: /health while the worker's event
    loop turns, /ready once it is connected to NATS and etcd and has read the fleet."""
    for address in two_workers_listening(make_stack):
        for path, state in (("health", "alive"), ("ready", "ready")):
            answer = http_get(f"http://{address}/{path}")
            assert answer is not None, (address, path)
            assert (answer[0], json.loads(answer[1])) == (200, {"status": state}), (address, path)
