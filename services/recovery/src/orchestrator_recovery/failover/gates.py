"""The gates of an automated recovery, as one pure decision: why a recovery must not start now.

:class:`~orchestrator_recovery.failover.recovering.Recoveries` reads the facts (the global
switch and the cluster's last recovery, from etcd) and asks :func:`why_blocked`; keeping the
decision apart from the reading lets the unit tests check each gate without a worker, a
store or a clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator_shared.analysis import Analysis
from orchestrator_shared.etcd.recovery import GlobalSwitch, LastRecovery, RecordKind

__all__ = ["why_blocked"]


def why_blocked(
    analysis: Analysis,
    *,
    switch: GlobalSwitch,
    last: LastRecovery | None,
    cluster: str,
    kind: RecordKind,
    now: datetime,
    block_period: timedelta,
) -> str:
    """Why the recovery of ``analysis`` must not start (empty: it may). The first that holds:
    automated recoveries disabled globally (``switch``), the failed instance downtimed, the
    cluster's ``last`` recovery of this ``kind`` (a failover's, or a semi-sync recovery's)
    still in its ``block_period`` and not acknowledged.

    ``last`` is only looked at after the other gates passed: a caller may read it only then
    and pass None before (an etcd read saved when the recovery is blocked anyway)."""
    if switch.disabled:
        by = f" by {switch.by}" if switch.by else ""
        return f"automated recoveries are disabled globally{by}"
    if analysis.is_downtimed or analysis.skippable_due_to_downtime:
        return f"{analysis.key} is downtimed"
    if last is not None and last.blocks(now, block_period):
        until = last.ended_at + block_period
        what = (
            "its semi-sync replicas were recovered" if kind is RecordKind.SEMI_SYNC else "recovered"
        )
        return (
            f"cluster {cluster} {what} at {last.ended_at.isoformat()} "
            f"(recovery {last.recovery_id}); blocked until {until.isoformat()} "
            "unless acknowledged (ack-cluster-recoveries)"
        )
    return ""
