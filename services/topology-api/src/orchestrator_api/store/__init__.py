"""The topology store: what topology-api keeps and serves (DESIGN.md §1, issue 3).

One async :class:`Store` port with three backends of the same schema and behaviour: SQLite (the
embedded default, one file, see :mod:`.sqlite`), PostgreSQL (shared by API replicas, see
:mod:`.postgres`) and MySQL/MariaDB (orchestrator's ``BackendDB: "mysql"``, shared likewise, see
:mod:`.mysql`). All run the same SQL (:mod:`.sql`) and the same versioned migrations
(:mod:`.schema`), applied when the store opens. :mod:`.consumer` fills the store from the bus.

Every failure of the database reaches callers as :class:`StoreError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator_api.store.aliases import Succession
from orchestrator_api.store.history import AnalysisChange, TopologyHistoryEntry
from orchestrator_api.store.lineage import RecoveryStep
from orchestrator_api.store.models import (
    AuditEntry,
    ClusterSummary,
    FailureDetection,
    GlobalRecoveries,
    RecoveryFilter,
    RecoveryRecord,
)
from orchestrator_api.store.tags import Tag
from orchestrator_api.store.view import FleetView
from orchestrator_shared.errors import StoreError
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.operator_state import Candidate, Downtime, PromotionRule
from orchestrator_shared.snapshot import InstanceSnapshot
from orchestrator_shared.topology import Topology, TopologyInstance

if TYPE_CHECKING:
    from orchestrator_api.store.mysql import MySQLBackend

__all__ = [
    "AnalysisChange",
    "AuditEntry",
    "Backend",
    "Candidate",
    "ClusterSummary",
    "Downtime",
    "FailureDetection",
    "FleetView",
    "GlobalRecoveries",
    "PromotionRule",
    "RecoveryFilter",
    "RecoveryRecord",
    "RecoveryStep",
    "Store",
    "StoreError",
    "Succession",
    "Tag",
    "TopologyHistoryEntry",
    "open_store",
]


class Backend(StrEnum):
    """``BackendDB`` (orchestrator's ``sqlite3`` is ``sqlite``)."""

    SQLITE = "sqlite"
    POSTGRES = "postgres"
    MYSQL = "mysql"


class Store(Protocol):
    """Instances, clusters, downtime, candidates, audit and recovery history."""

    @property
    def backend(self) -> str: ...

    async def close(self) -> None:
        """Release connections; idempotent."""
        ...

    async def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers."""
        ...

    async def identity(self) -> str:
        """The database's id ('' for one made before ids existed): the bus consumers' names
        follow it (:func:`orchestrator_api.store.consumer.durable_prefix`)."""
        ...

    # instances and clusters (reads come from a view cached per store generation)
    async def view(self) -> FleetView: ...
    async def topology(self) -> Topology: ...
    async def get_instance(self, key: InstanceKey) -> TopologyInstance | None: ...
    async def all_instances(self) -> list[TopologyInstance]: ...
    async def cluster_instances(self, cluster: str) -> list[TopologyInstance]: ...
    async def clusters(self) -> list[ClusterSummary]: ...
    async def cluster(self, name: str) -> ClusterSummary | None: ...
    async def cluster_by_alias(self, alias: str) -> str | None: ...
    async def resolve_cluster(self, hint: str) -> str | None: ...
    async def search(self, text: str) -> list[TopologyInstance]: ...

    async def write_batch(
        self, snapshots: Sequence[InstanceSnapshot], audit: Sequence[AuditEntry] = ()
    ) -> None: ...
    async def forget_instance(self, key: InstanceKey) -> bool: ...
    async def forget_cluster(self, cluster: str) -> int: ...
    async def set_cluster_alias(self, cluster: str, alias: str) -> None: ...
    async def set_cluster_domain(self, cluster: str, domain: str) -> None: ...

    # downtime and promotion candidates
    async def begin_downtime(self, downtime: Downtime) -> None: ...
    async def end_downtime(self, key: InstanceKey) -> bool: ...
    async def downtimes(self, *, now: datetime) -> list[Downtime]: ...
    async def register_candidate(self, candidate: Candidate) -> None: ...
    async def candidates(self, *, now: datetime) -> list[Candidate]: ...

    # instance tags (:mod:`.tags`; forgetting an instance removes its tags)
    async def put_tag(self, key: InstanceKey, tag: Tag) -> None: ...
    async def instance_tags(self, key: InstanceKey) -> list[Tag]: ...
    async def tags_by_instance(self) -> dict[InstanceKey, dict[str, str]]: ...
    async def untag(self, key: InstanceKey | None, tag: Tag) -> list[InstanceKey]: ...

    # master changes and recovery steps (:mod:`.lineage`)
    async def record_succession(self, succession: Succession) -> None: ...
    async def successions(self) -> list[Succession]: ...
    async def record_recovery_step(self, step: RecoveryStep) -> None: ...
    async def recovery_steps(self, recovery_uid: str) -> list[RecoveryStep]: ...

    # audit, failure detections, recoveries
    async def append_audit(self, entries: Sequence[AuditEntry]) -> None: ...
    async def audit_log(
        self,
        *,
        key: InstanceKey | None = None,
        cluster: str | None = None,
        type: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[AuditEntry]: ...
    async def record_failure_detection(self, detection: FailureDetection) -> int: ...
    async def failure_detections(
        self,
        *,
        id: int | None = None,
        cluster: str | None = None,
        cluster_alias: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[FailureDetection]: ...
    async def record_recovery(self, record: RecoveryRecord) -> int: ...
    async def recoveries(self, where: RecoveryFilter | None = None) -> list[RecoveryRecord]: ...
    async def acknowledge_recoveries(
        self, where: RecoveryFilter, *, by: str, comment: str, at: datetime
    ) -> int: ...

    # topology history and the analysis changelog (:mod:`.history`)
    async def snapshot_topologies(self, *, at: datetime) -> int: ...
    async def topology_history(
        self, *, cluster: str | None = None
    ) -> list[TopologyHistoryEntry]: ...
    async def record_analysis(
        self, cluster: str, problems: Mapping[InstanceKey, str], *, at: datetime
    ) -> int: ...
    async def analysis_changelog(self) -> list[AnalysisChange]: ...

    # global recovery switch and housekeeping
    async def global_recoveries(self) -> GlobalRecoveries: ...
    async def set_global_recoveries(self, enabled: bool, *, by: str, at: datetime) -> None: ...
    async def purge(self, *, now: datetime, history_before: datetime) -> int: ...


async def open_store(
    backend: Backend | str,
    *,
    sqlite_path: Path | str = "orchestrator.sqlite3",
    postgres_dsn: str = "",
    postgres_max_connections: int = 10,
    mysql: MySQLBackend | None = None,
) -> Store:
    """Open the store chosen by ``BackendDB``, migrating its schema as needed.

    ``sqlite_path`` is ``SQLite3DataFile``; ``postgres_dsn`` is ``PostgreSQLDSN``; ``mysql``
    holds the ``MySQLOrchestrator*`` settings (``MySQLBackend.from_settings``).
    """
    try:
        chosen = Backend("sqlite" if backend == "sqlite3" else backend)
    except ValueError:
        raise StoreError(
            f"BackendDB: expected sqlite, postgres or mysql, got {backend!r}"
        ) from None
    if chosen is Backend.SQLITE:
        from orchestrator_api.store.sqlite import open_sqlite_store  # noqa: PLC0415

        return await open_sqlite_store(sqlite_path)
    if chosen is Backend.MYSQL:
        if mysql is None:
            raise StoreError("MySQLOrchestratorHost: required when BackendDB is mysql")
        from orchestrator_api.store.mysql import open_mysql_store  # noqa: PLC0415

        return await open_mysql_store(mysql)
    if not postgres_dsn:
        raise StoreError("PostgreSQLDSN: required when BackendDB is postgres")
    from orchestrator_api.store.postgres import open_postgres_store  # noqa: PLC0415

    return await open_postgres_store(postgres_dsn, max_connections=postgres_max_connections)
