"""Topology history and the analysis changelog (schema version 4): two of orchestrator's
history tables, for ``snapshot-topologies`` and ``replication-analysis-changelog``.

* ``topology_history`` (orchestrator's ``database_instance_topology_history``): each
  ``snapshot-topologies`` copies every stored instance's master, cluster and version under the
  snapshot's Unix second; a second copy within the same second adds nothing, as orchestrator's
  ``insert ignore``.
* ``analysis_changelog`` (orchestrator's ``database_instance_analysis_changelog``): each change
  of an instance's analysis code. The active recovery worker publishes a cluster's problems
  whenever they change (``orchestrator.v1.analysis.<cluster>``, the whole list each time); an
  instance is written down when its code differs from the last one written for it, and an
  instance of that cluster whose problem is no longer listed gets ``NoProblem``. An entry's
  cluster is the one whose events last listed the instance (after a failover the failed master
  is listed under the new cluster's name, with the same code: its entry moves there). A
  redelivered event writes nothing new; an event older than the cluster's newest entry is
  ignored.

Both are purged with the other history (``AuditPurgeDays``), except that an instance's latest
changelog entry is kept while it names a problem: it is what the next change is compared with.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator_api.store.driver import Driver, Row, Transaction
from orchestrator_api.store.rows import from_seconds, key_or_none, key_text, to_seconds
from orchestrator_api.store.view import FleetView
from orchestrator_shared.errors import InvalidInstanceKey
from orchestrator_shared.instance_key import InstanceKey

NO_PROBLEM = "NoProblem"


@dataclass(frozen=True, slots=True)
class TopologyHistoryEntry:
    """One instance as one ``snapshot-topologies`` saw it."""

    snapshot_at: datetime  # whole seconds
    key: InstanceKey
    master_key: InstanceKey | None
    cluster: str
    version: str


@dataclass(frozen=True, slots=True)
class AnalysisChange:
    """An instance's analysis code changed (to ``analysis``) at ``at``."""

    key: InstanceKey
    cluster: str
    analysis: str
    at: datetime
    id: int = 0


_LATEST_IN_CLUSTER = (
    "SELECT instance_key, analysis FROM analysis_changelog AS c WHERE cluster_name = ? AND "
    "id = (SELECT MAX(id) FROM analysis_changelog AS l WHERE l.instance_key = c.instance_key)"
)
_LATEST_OF_INSTANCE = (
    "SELECT id, cluster_name, analysis FROM analysis_changelog WHERE instance_key = ? "
    "ORDER BY id DESC LIMIT 1"
)
# old changes, but not an instance's latest one while it names a problem (the derived table
# lets MySQL read the table a DELETE changes; GROUP BY keeps it from being merged away)
_PURGE_CHANGES = (
    "DELETE FROM analysis_changelog WHERE at < ? AND (analysis = ? OR id NOT IN "
    "(SELECT id FROM (SELECT MAX(id) AS id FROM analysis_changelog GROUP BY instance_key) "
    "AS latest))"
)


class HistoryStore:
    """The history methods of :class:`~orchestrator_api.store.sql.SqlStore` (neither table is
    part of the fleet view: writing them does not move the store's generation)."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        def _writing(self) -> AbstractAsyncContextManager[Transaction]: ...
        async def view(self) -> FleetView: ...

    # --- topology history ------------------------------------------------------------------
    async def snapshot_topologies(self, *, at: datetime) -> int:
        """Copy every stored instance's master, cluster and version under ``at`` (whole
        seconds); how many instances were copied."""
        second = int(to_seconds(at))
        rows = [
            (
                second,
                str(node.key),
                key_text(node.snapshot.master_key),
                node.cluster_name,
                node.snapshot.version,
            )
            for node in (await self.view()).all_instances()
        ]
        async with self._writing() as tx:
            await tx.executemany(
                "INSERT INTO topology_history "
                "(snapshot_at, instance_key, master_key, cluster_name, version) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (snapshot_at, instance_key) DO NOTHING",
                rows,
            )
        return len(rows)

    async def topology_history(self, *, cluster: str | None = None) -> list[TopologyHistoryEntry]:
        """Saved snapshots (of one cluster, when given), oldest first, by instance key."""
        where, args = ("", []) if cluster is None else (" WHERE cluster_name = ?", [cluster])
        found = await self._driver.fetch(
            "SELECT snapshot_at, instance_key, master_key, cluster_name, version "
            f"FROM topology_history{where} ORDER BY snapshot_at, instance_key",
            *args,
        )
        entries = []
        for at, key, master, name, version in found:
            try:
                entries.append(
                    TopologyHistoryEntry(
                        from_seconds(at), InstanceKey.parse(key), key_or_none(master), name, version
                    )
                )
            except InvalidInstanceKey:
                continue
        return entries

    # --- analysis changelog ----------------------------------------------------------------
    async def record_analysis(
        self, cluster: str, problems: Mapping[InstanceKey, str], *, at: datetime
    ) -> int:
        """A cluster's problems as the worker published them at ``at`` (instance -> analysis
        code; empty: none left): write down each instance whose code changed; how many."""
        seconds = to_seconds(at)
        async with self._writing() as tx:
            newest = await tx.fetch(
                "SELECT MAX(at) FROM analysis_changelog WHERE cluster_name = ?", cluster
            )
            if newest[0][0] is not None and float(newest[0][0]) > seconds:
                return 0  # an older event, delivered again after newer ones
            listed = {str(key): code for key, code in problems.items()}
            open_here = {
                str(key): str(code)
                for key, code in await tx.fetch(_LATEST_IN_CLUSTER, cluster)
                if code != NO_PROBLEM
            }
            changes = []
            for key, code in listed.items():
                if open_here.get(key) == code:
                    continue
                found = await tx.fetch(_LATEST_OF_INSTANCE, key)
                if not found or found[0][2] != code:
                    changes.append((key, cluster, code, seconds))
                elif found[0][1] != cluster:  # the same problem, listed by another cluster now
                    await tx.execute(
                        "UPDATE analysis_changelog SET cluster_name = ? WHERE id = ?",
                        cluster,
                        found[0][0],
                    )
            for key in open_here.keys() - listed.keys():
                changes.append((key, cluster, NO_PROBLEM, seconds))
            await tx.executemany(
                "INSERT INTO analysis_changelog (instance_key, cluster_name, analysis, at) "
                "VALUES (?, ?, ?, ?)",
                sorted(changes),
            )
        return len(changes)

    async def analysis_changelog(self) -> list[AnalysisChange]:
        """Every recorded change, by instance (host, then port), oldest first."""
        found = await self._driver.fetch(
            "SELECT id, instance_key, cluster_name, analysis, at FROM analysis_changelog "
            "ORDER BY id"
        )
        changes = []
        for row in found:
            change = _change_of(row)
            if change is not None:
                changes.append(change)
        return sorted(changes, key=lambda c: (c.key.host, c.key.port, c.id))

    async def _purge_history(self, tx: Transaction, before: float) -> int:
        """Inside the store's purge: snapshots and changes older than ``before`` (Unix
        seconds), keeping each instance's latest change while it names a problem."""
        count = await tx.execute("DELETE FROM topology_history WHERE snapshot_at < ?", before)
        return count + await tx.execute(_PURGE_CHANGES, before, NO_PROBLEM)


def _change_of(row: Row) -> AnalysisChange | None:
    id_, key, cluster, analysis, at = row
    try:
        return AnalysisChange(InstanceKey.parse(key), cluster, analysis, from_seconds(at), int(id_))
    except InvalidInstanceKey:
        return None


__all__ = ["NO_PROBLEM", "AnalysisChange", "HistoryStore", "TopologyHistoryEntry"]
