"""How long each step of a failover may take: one frozen value for the executor
(:mod:`orchestrator_recovery.failover.executor`), so its callers (the wiring, the tests) change
one bound by name instead of threading five keyword arguments through every entry point.
``docs/recovery-execution.md`` says what each bound guards against."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator_recovery.failover.catch_up import DEFAULT_CATCH_UP_TIMEOUT

__all__ = [
    "DEFAULT_CATCH_UP_TIMEOUT",
    "DEFAULT_FENCE_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_STEP_TIMEOUT",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_VERIFY_TIMEOUT",
    "HUNG_FENCE_TIMEOUT",
    "Timeouts",
]

DEFAULT_FENCE_TIMEOUT = 0.3
"""How long the old master gets to answer (connect, read_only, kill, position) before it is
taken as unreachable: a hung master must not hold the failover up."""
HUNG_FENCE_TIMEOUT = 0.05
"""The fence attempt's bound when the failed master hangs (its probes timed out, for discovery's
liveness timeout and the verification's bound): it accepts a TCP connection and answers
nothing, so the attempt only delays the promotion; the recovery leader fences it the moment it
wakes (the link kept from before the hang, fresh connections), docs/recovery.md "Hung master"."""
DEFAULT_STEP_TIMEOUT = 1.0
"""The bound of one statement (connect included). Must stay below the lease TTL."""
DEFAULT_VERIFY_TIMEOUT = 1.0
"""How long a repointed replica gets to replicate from its new master before it is lost."""
DEFAULT_POLL_INTERVAL = 0.01


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The executor's bounds, in seconds.

    ``fence``: the whole fencing of a failed master; ``step``: one statement (and the fencing
    of a returning old master, which nothing waits for); ``verify``: a moved replica to
    replicate from its new master; ``catch_up``: a successor to apply its relay log when no
    :class:`~orchestrator_recovery.failover.catch_up.CatchUpPolicy` is given, and a relocation's
    new master to reach a moved replica's position; ``poll``: between two looks at a replica.
    """

    fence: float = DEFAULT_FENCE_TIMEOUT
    step: float = DEFAULT_STEP_TIMEOUT
    verify: float = DEFAULT_VERIFY_TIMEOUT
    catch_up: float = DEFAULT_CATCH_UP_TIMEOUT
    poll: float = DEFAULT_POLL_INTERVAL


DEFAULT_TIMEOUTS = Timeouts()
