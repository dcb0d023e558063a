"""Galera analysis that needs memory across snapshots, through the whole stack
(``make_stack(galera=3)``: discovery, the API and two recovery workers as their own processes
on a real 3-node MariaDB Galera cluster): a node desynced by hand is ``GaleraNodeNotSynced`` at
once, ``GaleraNodeDesyncedTooLong`` once ``GaleraDesyncedTooLongSeconds`` have passed, clear
again when it resyncs, and nothing is ever recovered for it (docs/galera.md)."""

from __future__ import annotations

import asyncio
import time

import pytest

from orchestrator_shared.events import AnalysisEvent
from tests.integration.stack_support import StackFactory
from tests.integration.test_recovery_stack import (
    api_get,
    bus_messages,
    recovery_events,
    wait_until,
)
from tests.integration.test_semi_sync_analysis import analysis_of

pytestmark = pytest.mark.integration

TOO_LONG_SECONDS = 4
NOT_SYNCED = "GaleraNodeNotSynced"
TOO_LONG = "GaleraNodeDesyncedTooLong"


async def test_a_node_desynced_by_hand_is_desynced_too_long_after_the_limit_until_resynced(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(galera=3, GaleraDesyncedTooLongSeconds=TOO_LONG_SECONDS)
    sandbox = stack.sandbox
    node = sandbox.node(1).key
    wait_until(
        lambda: api_get(stack, f"/api/instance/{node.replace(':', '/')}"),
        timeout=30,
        what="the API knows Galera node 1",
    )
    assert analysis_of(stack, node) is None  # synced: nothing to report
    seen: list[tuple[float, str | None]] = []

    def code_is(expected: str | None) -> bool:
        seen.append((time.monotonic(), found := analysis_of(stack, node)))
        return found == expected

    async with (
        recovery_events(stack.nats_url) as events,
        bus_messages(stack.nats_url, "orchestrator.v1.analysis.>", AnalysisEvent) as published,
    ):
        try:
            # (blocking calls in a thread: the bus subscriptions keep receiving meanwhile)
            desynced_at = time.monotonic()
            await asyncio.to_thread(sandbox.execute, 1, "SET GLOBAL wsrep_desync = ON")
            await asyncio.to_thread(
                wait_until,
                lambda: code_is(TOO_LONG),
                timeout=TOO_LONG_SECONDS + 20,
                what=f"{TOO_LONG} on node 1",
            )
        finally:
            await asyncio.to_thread(sandbox.execute, 1, "SET GLOBAL wsrep_desync = OFF")
        too_long_at = seen[-1][0]
        await asyncio.to_thread(
            wait_until,
            lambda: code_is(None),
            timeout=30,
            what="the analysis of node 1 clear again",
        )
        await asyncio.sleep(1)  # the worker's pass after the last change
    codes = [code for _, code in seen]
    # NotSynced first, for about the limit (a poll's slack), then DesyncedTooLong, then clear
    assert NOT_SYNCED in codes[: codes.index(TOO_LONG)], codes
    assert too_long_at - desynced_at >= TOO_LONG_SECONDS - 1, (too_long_at - desynced_at, codes)
    assert events == [], [(e.type, e.data.reason) for e in events]  # nothing recovered
    # the leader published it, not actionable, and then its end
    problems = [(p.instance, p.code, p.is_actionable) for e in published for p in e.problems]
    assert (node, TOO_LONG, False) in problems, problems
    last = {e.cluster: e.problems for e in published}
    assert not any(p.instance == node for found in last.values() for p in found), last
