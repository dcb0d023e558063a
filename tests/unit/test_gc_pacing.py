"""Garbage-collector pacing: automatic full collections off while it runs, all restored after."""

from __future__ import annotations

import asyncio
import gc

import pytest

from orchestrator_shared.gc_pacing import pace_garbage_collection

pytestmark = pytest.mark.unit


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_pacing_freezes_collects_on_schedule_and_restores() -> None:
    original = gc.get_threshold()
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            collected.append(info["collected"])

    gc.callbacks.append(count)
    try:
        pacing = asyncio.create_task(pace_garbage_collection(every=0.05, refreeze_every=0.12))
        await asyncio.sleep(0.01)
        assert gc.get_freeze_count() > 0  # start-up objects are frozen
        assert gc.get_threshold()[:2] == original[:2]  # young collections as before
        assert gc.get_threshold()[2] > 10**6  # automatic full collections off
        for _ in range(100):
            Cycle()  # cyclic garbage only a collection reclaims
        await asyncio.sleep(0.3)
        assert sum(collected) >= 100  # the scheduled full collections reclaimed it
        pacing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pacing
    finally:
        gc.callbacks.remove(count)
    assert gc.get_threshold() == original
    assert gc.get_freeze_count() == 0
