"""Failure detections, recoveries and their acknowledgements, and the display copy of the
global recovery switch, as the store keeps them (``/api/audit-failure-detection``,
``/api/audit-recovery``...). None of them is part of the fleet view: writing them leaves the
store's generation alone. The recovery events fill them (:mod:`.recoveries`)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator_api.store import rows
from orchestrator_api.store.driver import Driver, Transaction
from orchestrator_api.store.models import (
    FailureDetection,
    GlobalRecoveries,
    RecoveryFilter,
    RecoveryRecord,
)


class RecoveryStore:
    """The failure-detection, recovery and global-switch methods of
    :class:`~orchestrator_api.store.sql.SqlStore`."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        def _writing(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def record_failure_detection(self, detection: FailureDetection) -> int:
        """Store a failure detection; its id."""
        async with self._writing() as tx:
            found = await tx.fetch(
                f"INSERT INTO failure_detections ({rows.DETECTION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                *rows.detection_params(detection),
            )
        return int(found[0][0])

    async def failure_detections(
        self,
        *,
        id: int | None = None,
        cluster: str | None = None,
        cluster_alias: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[FailureDetection]:
        """Failure detections, newest first."""
        where, args = rows.where(
            ("id = ?", id), ("cluster_name = ?", cluster), ("cluster_alias = ?", cluster_alias)
        )
        found = await self._driver.fetch(
            f"SELECT id, {rows.DETECTION_COLUMNS} FROM failure_detections{where} "
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
        return [rows.detection_of(row) for row in found]

    async def record_recovery(self, record: RecoveryRecord) -> int:
        """Insert a recovery, or update the one with the same ``uid``; its id."""
        columns = rows.RECOVERY_COLUMNS.split(", ")
        updates = ", ".join(f"{column} = excluded.{column}" for column in columns[1:])
        async with self._writing() as tx:
            found = await tx.fetch(
                f"INSERT INTO recoveries ({rows.RECOVERY_COLUMNS}) "
                f"VALUES ({', '.join('?' for _ in columns)}) "
                f"ON CONFLICT (uid) DO UPDATE SET {updates} RETURNING id",
                *rows.recovery_params(record),
            )
        return int(found[0][0])

    async def recoveries(self, where: RecoveryFilter | None = None) -> list[RecoveryRecord]:
        """Recoveries matching every given filter, newest first."""
        where = where or RecoveryFilter()
        clause, args = rows.where(
            ("id = ?", where.id),
            ("uid = ?", where.uid),
            ("cluster_name = ?", where.cluster),
            ("cluster_alias = ?", where.cluster_alias),
            ("instance_key = ?", None if where.key is None else str(where.key)),
            ("acknowledged = ?", 0 if where.unacknowledged_only else None),
        )
        found = await self._driver.fetch(
            f"SELECT id, {rows.RECOVERY_COLUMNS} FROM recoveries{clause} "
            "ORDER BY id DESC LIMIT ? OFFSET ?",
            *args,
            where.limit,
            where.offset,
        )
        return [rows.recovery_of(row) for row in found]

    async def acknowledge_recoveries(
        self, where: RecoveryFilter, *, by: str, comment: str, at: datetime
    ) -> int:
        """Acknowledge the unacknowledged recoveries matching ``where`` (limit and offset
        ignored); how many."""
        clause, args = rows.where(
            ("acknowledged = ?", 0),
            ("id = ?", where.id),
            ("uid = ?", where.uid),
            ("cluster_name = ?", where.cluster),
            ("cluster_alias = ?", where.cluster_alias),
            ("instance_key = ?", None if where.key is None else str(where.key)),
        )
        async with self._writing() as tx:
            return await tx.execute(
                "UPDATE recoveries SET acknowledged = 1, acknowledged_at = ?, "
                f"acknowledged_by = ?, acknowledged_comment = ?{clause}",
                rows.to_seconds(at),
                by,
                comment,
                *args,
            )

    async def global_recoveries(self) -> GlobalRecoveries:
        found = await self._driver.fetch(
            "SELECT recoveries_enabled, recoveries_changed_at, recoveries_changed_by "
            "FROM store_state"
        )
        enabled, changed_at, changed_by = found[0]
        return GlobalRecoveries(
            enabled=bool(enabled),
            changed_at=rows.opt_from_seconds(changed_at),
            changed_by=changed_by,
        )

    async def set_global_recoveries(self, enabled: bool, *, by: str, at: datetime) -> None:
        async with self._writing() as tx:
            await tx.execute(
                "UPDATE store_state SET recoveries_enabled = ?, recoveries_changed_at = ?, "
                "recoveries_changed_by = ?",
                int(enabled),
                rows.to_seconds(at),
                by,
            )
