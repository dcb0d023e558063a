"""Garbage-collector pacing for long-running services that answer requests.

CPython's automatic full (generation 2) collection walks every tracked object. In a
topology-api holding a 1,000-instance fleet that is ~130,000 objects, and a service
ingesting a few hundred snapshots a second (each snapshot's objects live a few seconds, long
enough to reach the old generation) triggered one about twice a second, each stopping the
event loop for 30-55 ms on the benchmark machine: the whole p99 of the API's latency.

:func:`pace_garbage_collection` changes that, for the life of the service:

* everything alive once start-up is done (modules, classes, the app, the loaded fleet) is
  moved to the permanent generation (``gc.freeze()``) and never walked again;
* automatic full collections are off; young collections stay as they are (they are cheap,
  and most garbage is freed by reference counting anyway);
* every ``every`` seconds one full collection runs over what is not frozen (a few
  milliseconds), so cyclic garbage is still reclaimed;
* every ``refreeze_every`` seconds the frozen objects are collected too (``gc.unfreeze()``,
  collect, freeze again): the one long pause, rare enough not to show in any percentile,
  and the reason nothing leaks when something once frozen became cyclic garbage.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

# Full collections run only when asked: the third threshold counts generation-1 collections.
_NEVER = 1_000_000_000


async def pace_garbage_collection(*, every: float = 60.0, refreeze_every: float = 1800.0) -> None:
    """Run for as long as the service does (cancel to stop); see the module docstring."""
    original = gc.get_threshold()
    young, middle, _ = original
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, middle, _NEVER)
    try:
        last_refreeze = time.monotonic()
        while True:
            await asyncio.sleep(every)
            started = time.monotonic()
            if started - last_refreeze >= refreeze_every:
                gc.unfreeze()
                gc.collect()
                gc.freeze()
                last_refreeze = time.monotonic()
            else:
                gc.collect()
            log.debug("full garbage collection took %.1f ms", (time.monotonic() - started) * 1e3)
    finally:
        gc.unfreeze()
        gc.set_threshold(*original)
