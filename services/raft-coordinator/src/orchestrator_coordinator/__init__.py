"""Coordinator: one active recovery worker, on etcd leases with fencing (docs/coordinator.md).

- :mod:`~orchestrator_adapters.election` — the library every recovery worker runs in-process;
- :mod:`~orchestrator_adapters.etcd` — the etcd adapter (endpoints, TLS, auth, fail-over);
- :mod:`~orchestrator_coordinator.main` — ``orchestrator-coordinator``, which reports the election
  (``observer``, ``web``, ``metrics``, ``publisher``);
- :mod:`~orchestrator_coordinator.drill` — a stand-in worker for fault drills and benchmarks.
"""
