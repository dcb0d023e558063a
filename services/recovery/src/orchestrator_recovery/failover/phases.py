"""How long each stretch of one recovery's path took, for its events (``RecoveryData.phases``).

The worker cannot see a master die; the earliest it can know of is discovery's ``unreachable``
event. So a recovery's clock starts when that event reached the worker (or, for a failure found
otherwise, when the recovery began), and discovery's own detection time comes in the event.
Each later stretch is measured on the worker's monotonic clock, from the end of the stretch
before it; the executor reports its own two (``promote``, ``repoint``), which overlap when the
successor is made writable only after its replicas moved (a semi-sync master).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from orchestrator_recovery.fleet import Suspicion
from orchestrator_shared.events import TimedPhase

__all__ = ["PhaseTimer", "milliseconds"]


def milliseconds(seconds: float) -> float:
    """Seconds as milliseconds, to a tenth (what an event carries)."""
    return round(max(seconds, 0.0) * 1000, 1)


class PhaseTimer:
    """The phases of one recovery, in milliseconds, as they end."""

    def __init__(self, suspicion: Suspicion | None) -> None:
        self._last = suspicion.arrived if suspicion is not None else time.monotonic()
        self._phases: dict[str, float] = {}
        if suspicion is not None and suspicion.detect_ms is not None:
            self._phases[TimedPhase.DETECT.value] = round(suspicion.detect_ms, 1)

    def lap(self, phase: TimedPhase) -> None:
        """``phase`` ended now; it began when the previous one ended. Lapped again, it goes on
        (so a ``started`` event carries the plan so far, the next ones the whole of it)."""
        now = time.monotonic()
        so_far = self._phases.get(phase.value, 0.0)
        self._phases[phase.value] = round(so_far + milliseconds(now - self._last), 1)
        self._last = now

    def restart(self) -> None:
        """The next phase begins now (the time since the last one belongs to none)."""
        self._last = time.monotonic()

    def add(self, measured: Mapping[str, float]) -> None:
        """Phases measured elsewhere (the executor's), the last of them ending now."""
        self._phases.update(measured)
        self._last = time.monotonic()

    @property
    def phases(self) -> dict[str, float]:
        return dict(self._phases)
