"""Each cluster's problems published when they change (``orchestrator.v1.analysis.<cluster>``),
once per change: the leader's loop (:mod:`orchestrator_recovery.failover.worker`) hands every
pass's analyses to :meth:`AnalysisPublishing.publish_changes`; a cluster whose problems went
away gets one empty event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from orchestrator_recovery.ports import Isolate, Publisher
from orchestrator_shared.analysis import Analysis, AnalysisCode
from orchestrator_shared.events import AnalysisEvent, AnalysisProblem

__all__ = ["AnalysisPublishing", "problems_of", "signature_of"]

Signature = tuple[tuple[str, str], ...]


class AnalysisPublishing:
    """Remembers what was last published for each cluster."""

    def __init__(
        self, publisher: Publisher, *, clock: Callable[[], datetime], isolated: Isolate
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._isolated = isolated
        self._published: dict[str, Signature] = {}

    async def publish_changes(self, analyses: Sequence[Analysis]) -> None:
        """Publish the problems of each cluster whose problems changed, each cluster alone."""
        now = self._clock()
        by_cluster: dict[str, list[Analysis]] = {}
        for analysis in analyses:
            if analysis.code is not AnalysisCode.NO_PROBLEM:
                by_cluster.setdefault(analysis.cluster_name, []).append(analysis)
        for cluster in set(by_cluster) | set(self._published):
            with self._isolated(cluster, "publishing its analysis"):
                await self._publish_cluster(cluster, by_cluster.get(cluster, []), now)

    async def _publish_cluster(self, cluster: str, found: list[Analysis], now: datetime) -> None:
        """Publish ``cluster``'s problems when they changed since last published."""
        signature = signature_of(found)
        if self._published.get(cluster) == signature:
            return
        await self._publisher.analysis(
            AnalysisEvent(cluster=cluster, problems=problems_of(found), at=now)
        )
        if signature:
            self._published[cluster] = signature
        else:
            self._published.pop(cluster, None)


def signature_of(found: Sequence[Analysis]) -> Signature:
    """What identifies a cluster's problems: which instance has which problem."""
    return tuple(sorted((str(a.key), a.code.value) for a in found))


def problems_of(found: Sequence[Analysis]) -> tuple[AnalysisProblem, ...]:
    return tuple(
        AnalysisProblem(
            instance=str(a.key),
            code=a.code.value,
            description=a.description,
            is_actionable=a.is_actionable,
        )
        for a in found
    )
