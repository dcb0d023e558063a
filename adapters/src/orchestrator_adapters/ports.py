"""The callables a service hands the building blocks it wires together.

Only these two cross module boundaries; a module that needs one imports it from here rather than
spelling the type again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orchestrator_shared.events import AuditEvent

Guard = Callable[[], Awaitable[object]]
"""Called right before every statement that changes a server: returns (the fencing token) only
while this process holds the leader lease, raises
:class:`~orchestrator_shared.errors.LeaseLost` otherwise
(:meth:`orchestrator_adapters.election.Leadership.guard`)."""

Audit = Callable[[AuditEvent], Awaitable[object]]
"""Records one audit entry: published on ``orchestrator.v1.audit.<cluster>`` and kept by
topology-api (``/api/audit``)."""
