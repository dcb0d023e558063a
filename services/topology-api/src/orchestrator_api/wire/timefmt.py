"""Times and durations as orchestrator writes them in JSON.

orchestrator is written in Go, so its JSON holds Go's renderings:

* ``time.Duration`` is an integer number of **nanoseconds** (``ElapsedDowntime``,
  ``LastDiscoveryLatency``);
* timestamps read back from its backend as strings keep the backend's text. With a MySQL backend
  that is ``2006-01-02 15:04:05``; with the SQLite backend (what the reference samples were
  captured on) a ``DATETIME`` column comes back as RFC 3339, ``2006-01-02T15:04:05Z``. The
  samples show both: ``LastSeenTimestamp`` in RFC 3339, ``DowntimeEndTimestamp`` in the plain
  form (it is computed in SQL, so the driver never turns it into a time). We write each field in
  the form the samples show.

All times are written in UTC; a naive ``datetime`` is taken to be UTC already.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "go_datetime",
    "go_duration",
    "nanoseconds",
    "rfc3339",
    "whole_seconds_between",
]


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def go_datetime(moment: datetime | None) -> str:
    """``2006-01-02 15:04:05`` in UTC; ``""`` for no time (a NULL column in orchestrator)."""
    if moment is None:
        return ""
    return _utc(moment).strftime("%Y-%m-%d %H:%M:%S")


def rfc3339(moment: datetime | None) -> str:
    """``2006-01-02T15:04:05Z`` (whole seconds, UTC); ``""`` for no time."""
    if moment is None:
        return ""
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def nanoseconds(duration: timedelta | float) -> int:
    """A Go ``time.Duration``: a duration (or a number of seconds) as whole nanoseconds."""
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    return round(seconds * 1_000_000_000)


def whole_seconds_between(earlier: datetime, later: datetime) -> int:
    """``unix_timestamp(later) - unix_timestamp(earlier)``, as orchestrator's SQL computes it:
    both times truncated to whole seconds first, so 12.9 s to 13.1 s counts as one second."""
    return int(_utc(later).timestamp() // 1) - int(_utc(earlier).timestamp() // 1)


def _fraction(value: int, digits: int) -> str:
    """``value / 10**digits`` as Go writes it: no trailing zeros, no point for a whole."""
    whole, rest = divmod(value, 10**digits)
    tail = str(rest).rjust(digits, "0").rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String()``: ``0s``, ``850ns``, ``1.5µs``, ``12.34ms``, ``2.5s``,
    ``1m30s``, ``2h0m5s``."""
    if nanos == 0:
        return "0s"
    sign, value = ("-" if nanos < 0 else ""), abs(nanos)
    if value < 1_000:
        return f"{sign}{value}ns"
    if value < 1_000_000:
        return f"{sign}{_fraction(value, 3)}\u00b5s"
    if value < 1_000_000_000:
        return f"{sign}{_fraction(value, 6)}ms"
    seconds, rest = divmod(value, 1_000_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = _fraction(second * 1_000_000_000 + rest, 9) + "s"
    if minutes:
        text = f"{minute}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text
