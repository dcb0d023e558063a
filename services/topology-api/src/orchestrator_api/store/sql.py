"""The store, written once over the :class:`Driver` port; both backends run this code.

Writes: a batch of snapshots (and audit entries) is one transaction that first moves
``store_state.generation`` on, as does every change of what the view holds (cluster settings,
downtime, candidates). That row update also serializes writers sharing a PostgreSQL database,
so generations commit in order. Reads: a :class:`FleetView` cached per generation; each read
costs one small query (is the generation still the same?) and, after a change, a reload of the
snapshots written since (all of them after a forget) and of the small tables.

This module holds the fleet (instances, clusters and their settings, forgets) and the cached
view; each other resource has its module, mixed into :class:`SqlStore`: tags
(:mod:`.tags`), downtime and candidates (:mod:`.operator_state`), the audit log
(:mod:`.audit`), failure detections and recoveries (:mod:`.recovery_records`), successions and
recovery steps (:mod:`.lineage`), topology history (:mod:`.history`); the schema migrations
in :mod:`.migrate`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from orchestrator_api.store import rows
from orchestrator_api.store.audit import AuditStore
from orchestrator_api.store.driver import Driver, Row, Transaction
from orchestrator_api.store.history import HistoryStore
from orchestrator_api.store.lineage import LineageStore, load_successions
from orchestrator_api.store.migrate import migrate
from orchestrator_api.store.models import AuditEntry, ClusterSummary
from orchestrator_api.store.operator_state import OperatorStateStore
from orchestrator_api.store.recovery_records import RecoveryStore
from orchestrator_api.store.tags import TagStore, forget_tags
from orchestrator_api.store.view import ClusterSetting, FleetView
from orchestrator_shared.errors import StoreError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import Topology, TopologyInstance, update_topology

log = logging.getLogger(__name__)


# Reads within this many seconds of a generation check reuse the cached view without asking the
# database again (one query per read was a third of a cluster read's cost).
VIEW_RECHECK_SECONDS = 0.02

# A snapshot probed before its instance was forgotten (already on its way through the bus when
# discovery was told to forget it) is ignored for this long after the forget, so a forget is not
# undone at once by the last poll before it.
FORGET_GUARD_SECONDS = 60.0
# while the database is down, how often a read asks it again (else: the view in memory)
OUTAGE_RECHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class _Cached:
    generation: int
    forget_epoch: int
    view: FleetView


async def store_on(driver: Driver) -> SqlStore:
    """The store over ``driver``, its schema migrated first; ``driver`` is closed if that
    fails."""
    try:
        await migrate(driver)
    except BaseException:
        await driver.close()
        raise
    return SqlStore(driver)


class SqlStore(TagStore, LineageStore, HistoryStore, OperatorStateStore, AuditStore, RecoveryStore):
    """The topology store over one driver (see :mod:`orchestrator_api.store`); its tag
    methods come from :class:`TagStore`, its succession and recovery-step methods from
    :class:`LineageStore`, its topology history and analysis changelog from
    :class:`HistoryStore`, downtime and candidates from :class:`OperatorStateStore`, the audit
    log from :class:`AuditStore`, failure detections, recoveries and the global switch's copy
    from :class:`RecoveryStore`."""

    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._cached: _Cached | None = None
        self._refresh_lock = asyncio.Lock()
        self._checked_at = -math.inf  # when the stored generation was last compared
        self._serving_from_memory = False  # the database failed the last generation check
        # (generation, forget epoch) a snapshot write in progress will install its view as
        self._installing: tuple[int, int] | None = None
        # instances this process forgot, and when (Unix seconds): see FORGET_GUARD_SECONDS
        self._forgotten: dict[InstanceKey, float] = {}

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[Transaction]:
        """A write transaction; afterwards the next read looks at the generation again."""
        try:
            async with self._driver.transaction() as tx:
                yield tx
        finally:
            self._checked_at = -math.inf

    @property
    def backend(self) -> str:
        return self._driver.dialect.value

    async def close(self) -> None:
        await self._driver.close()

    async def ping(self) -> None:
        await self._driver.fetch("SELECT 1")

    async def identity(self) -> str:
        """This database's id: random, made with its schema; '' for one made by a release
        before ids existed. Every process on this database sees the same one."""
        rows = await self._driver.fetch("SELECT store_id FROM store_identity")
        return str(rows[0][0]) if rows else ""

    # --- the cached view -------------------------------------------------------------------
    async def view(self) -> FleetView:
        """The fleet as of the latest committed write: this process's writes at once, other
        processes' (API replicas sharing PostgreSQL) within ``VIEW_RECHECK_SECONDS``."""
        cached = self._cached
        if cached is not None and time.monotonic() - self._checked_at < VIEW_RECHECK_SECONDS:
            return cached.view
        self._checked_at = time.monotonic()
        try:
            state = await self._driver.fetch("SELECT generation, forget_epoch FROM store_state")
        except StoreError as exc:
            if cached is None:
                raise
            # The database is down: the fleet as last read (what discovery reported then)
            # beats no answer; ask again in a second, not on every read.
            self._checked_at += OUTAGE_RECHECK_SECONDS - VIEW_RECHECK_SECONDS
            if not self._serving_from_memory:
                self._serving_from_memory = True
                log.warning("store unavailable, serving the fleet from memory: %s", exc)
            return cached.view
        if self._serving_from_memory:
            self._serving_from_memory = False
            log.info("store available again")
        generation, epoch = int(state[0][0]), int(state[0][1])
        cached = self._cached
        if cached is not None and (cached.generation, cached.forget_epoch) == (generation, epoch):
            return cached.view
        if cached is not None and self._installing == (generation, epoch):
            # The stored state is exactly what a snapshot write of ours is committing; it will
            # install the view it built. Until it returns, the state before it is a consistent
            # answer, and loading now would only redo its work.
            self._checked_at = -math.inf
            return cached.view
        async with self._refresh_lock:
            cached = self._cached
            if (
                cached is not None
                and cached.generation >= generation
                and cached.forget_epoch == epoch
            ):
                return cached.view
            self._cached = await self._load(cached, generation, epoch)
            return self._cached.view

    async def _load(self, cached: _Cached | None, generation: int, epoch: int) -> _Cached:
        if cached is None or cached.forget_epoch != epoch:
            snapshots: dict[InstanceKey, InstanceSnapshot] = {}
            found = await self._driver.fetch("SELECT instance_key, snapshot FROM instances")
        else:
            snapshots = dict(cached.view.snapshots)
            found = await self._driver.fetch(
                "SELECT instance_key, snapshot FROM instances WHERE generation > ?",
                cached.generation,
            )
        for key_text, payload in found:
            try:
                snapshot = InstanceSnapshot.from_json(payload)
            except ValidationError as exc:
                log.warning("stored snapshot of %s is unreadable, left out: %s", key_text, exc)
                continue
            snapshots[snapshot.instance_key] = snapshot
        settings = {
            row[0]: ClusterSetting(alias_override=row[1], domain=row[2])
            for row in await self._driver.fetch(
                "SELECT cluster_name, alias_override, domain FROM cluster_settings"
            )
        }
        downtime = [
            rows.downtime_of(row)
            for row in await self._driver.fetch(f"SELECT {rows.DOWNTIME_COLUMNS} FROM downtime")
        ]
        candidates = [
            rows.candidate_of(row)
            for row in await self._driver.fetch(f"SELECT {rows.CANDIDATE_COLUMNS} FROM candidates")
        ]
        view = FleetView(
            snapshots,
            settings,
            downtime=downtime,
            candidates=candidates,
            successions=await load_successions(self._driver),
        )
        return _Cached(generation, epoch, view)

    async def topology(self) -> Topology:
        return (await self.view()).topology

    async def get_instance(self, key: InstanceKey) -> TopologyInstance | None:
        return (await self.view()).instance(key)

    async def all_instances(self) -> list[TopologyInstance]:
        return (await self.view()).all_instances()

    async def cluster_instances(self, cluster: str) -> list[TopologyInstance]:
        return (await self.view()).cluster_instances(cluster)

    async def clusters(self) -> list[ClusterSummary]:
        return list((await self.view()).summaries.values())

    async def cluster(self, name: str) -> ClusterSummary | None:
        return (await self.view()).summaries.get(name)

    async def cluster_by_alias(self, alias: str) -> str | None:
        return (await self.view()).cluster_by_alias(alias)

    async def resolve_cluster(self, hint: str) -> str | None:
        return (await self.view()).resolve_cluster(hint)

    async def search(self, text: str) -> list[TopologyInstance]:
        return (await self.view()).search(text)

    # --- writes: snapshots -----------------------------------------------------------------
    async def _next_generation(self, tx: Transaction, *, forgets: bool = False) -> int:
        bump = ", forget_epoch = forget_epoch + 1" if forgets else ""
        found = await tx.fetch(
            f"UPDATE store_state SET generation = generation + 1{bump} RETURNING generation"
        )
        return int(found[0][0])

    async def write_batch(
        self,
        snapshots: Sequence[InstanceSnapshot],
        audit: Sequence[AuditEntry] = (),
    ) -> None:
        """Store snapshots (latest per instance wins; an older one than stored is ignored, and
        so is one probed before this process forgot its instance) and audit entries, all in one
        transaction."""
        if not snapshots and not audit:
            return
        latest: dict[InstanceKey, InstanceSnapshot] = {}
        for snapshot in snapshots:
            forgotten_at = self._forgotten.get(snapshot.instance_key)
            if forgotten_at is not None and snapshot.probe.checked_at.timestamp() < forgotten_at:
                continue  # probed before the forget: the forget stands
            known = latest.get(snapshot.instance_key)
            if known is None or snapshot.probe.checked_at >= known.probe.checked_at:
                latest[snapshot.instance_key] = snapshot
        before = await self.view() if latest else None
        try:
            await self._write_snapshots(before, latest, audit)
        finally:
            self._installing = None

    async def _write_snapshots(
        self,
        before: FleetView | None,
        latest: dict[InstanceKey, InstanceSnapshot],
        audit: Sequence[AuditEntry],
    ) -> None:
        before_cache = self._cached
        installed: _Cached | None = None
        now = time.time()
        async with self._writing() as tx:
            if latest and before is not None:
                generation = await self._next_generation(tx)
                # as the upsert does: a snapshot older than the stored one is ignored
                merged = dict(before.snapshots)
                for key, snap in latest.items():
                    stored = merged.get(key)
                    if stored is None or snap.probe.checked_at >= stored.probe.checked_at:
                        merged[key] = snap
                topology = update_topology(before.topology, merged, latest)
                if before_cache is not None and before_cache.generation == generation - 1:
                    # nobody wrote in between: the merged snapshots are exactly the new state,
                    # so readers need not reload and rebuild what was just built
                    self._installing = (generation, before_cache.forget_epoch)
                    installed = _Cached(
                        generation,
                        before_cache.forget_epoch,
                        before.with_snapshots(merged, topology),
                    )
                await tx.executemany(
                    rows.UPSERT_INSTANCE,
                    [
                        rows.instance_params(snap, topology, generation, now)
                        for snap in latest.values()
                    ],
                )
                moved = (
                    [
                        (name, str(key))
                        for key, name in topology.cluster_of_instance.items()
                        if key not in latest
                        and before.topology.cluster_of_instance.get(key) != name
                    ]
                    if topology.cluster_of_instance is not before.topology.cluster_of_instance
                    else []
                )
                if moved:
                    await tx.executemany(
                        "UPDATE instances SET cluster_name = ? WHERE instance_key = ?", moved
                    )
            if audit:
                await tx.executemany(
                    f"INSERT INTO audit ({rows.AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    [rows.audit_params(entry) for entry in audit],
                )
        if installed is not None:
            current = self._cached
            if current is None or current.generation < installed.generation:
                self._cached = installed

    def _remember_forgotten(self, keys: Sequence[InstanceKey]) -> None:
        now = time.time()
        self._forgotten = {
            key: at for key, at in self._forgotten.items() if now - at < FORGET_GUARD_SECONDS
        }
        self._forgotten.update((key, now) for key in keys)

    async def forget_instance(self, key: InstanceKey) -> bool:
        self._remember_forgotten([key])
        async with self._writing() as tx:
            await self._next_generation(tx, forgets=True)
            await forget_tags(tx, [str(key)])
            count = await tx.execute("DELETE FROM instances WHERE instance_key = ?", str(key))
        return count > 0

    async def forget_cluster(self, cluster: str) -> int:
        """Forget every instance of a cluster; how many were forgotten."""
        nodes = (await self.view()).cluster_instances(cluster)
        self._remember_forgotten([node.key for node in nodes])
        members = [str(node.key) for node in nodes]
        async with self._writing() as tx:
            await self._next_generation(tx, forgets=True)
            await forget_tags(tx, members, cluster)
            await tx.executemany(
                "DELETE FROM instances WHERE instance_key = ?", [(key,) for key in members]
            )
            await tx.execute("DELETE FROM instances WHERE cluster_name = ?", cluster)
        return len(members)

    async def set_cluster_alias(self, cluster: str, alias: str) -> None:
        """Override the alias of a cluster (``""`` removes the override)."""
        await self._set_cluster_setting(cluster, "alias_override", alias)

    async def set_cluster_domain(self, cluster: str, domain: str) -> None:
        await self._set_cluster_setting(cluster, "domain", domain)

    async def _set_cluster_setting(self, cluster: str, column: str, value: str) -> None:
        async with self._writing() as tx:
            await self._next_generation(tx)
            await tx.execute(
                "INSERT INTO cluster_settings (cluster_name, alias_override, domain) "
                "VALUES (?, '', '') ON CONFLICT (cluster_name) DO NOTHING",
                cluster,
            )
            await tx.execute(
                f"UPDATE cluster_settings SET {column} = ? WHERE cluster_name = ?", value, cluster
            )

    # --- housekeeping ----------------------------------------------------------------------
    async def purge(self, *, now: datetime, history_before: datetime) -> int:
        """Delete expired downtime and candidates, and audit entries, failure detections,
        finished recoveries, recovery steps, topology snapshots and analysis changes older than
        ``history_before``; how many rows went. (Successions are kept: an old cluster name
        resolves for as long as it is used.)"""
        now_s, before_s = rows.to_seconds(now), rows.to_seconds(history_before)
        async with self._writing() as tx:
            await self._next_generation(tx)
            count = await tx.execute("DELETE FROM downtime WHERE ends_at <= ?", now_s)
            count += await tx.execute("DELETE FROM candidates WHERE expires_at <= ?", now_s)
            count += await tx.execute("DELETE FROM audit WHERE at < ?", before_s)
            count += await tx.execute(
                "DELETE FROM failure_detections WHERE detected_at < ?", before_s
            )
            count += await tx.execute(
                "DELETE FROM recoveries WHERE is_active = 0 AND started_at < ?", before_s
            )
            count += await tx.execute("DELETE FROM recovery_steps WHERE at < ?", before_s)
            count += await self._purge_history(tx, before_s)
        return count


__all__ = ["Row", "SqlStore", "migrate", "store_on"]
