"""The audit log as the store keeps it (``/api/audit``): entries are written with the
snapshots of a batch, in its transaction, or on their own; read newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from orchestrator_api.store import rows
from orchestrator_api.store.driver import Driver
from orchestrator_api.store.models import AuditEntry
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.snapshot import InstanceSnapshot


class AuditStore:
    """The audit methods of :class:`~orchestrator_api.store.sql.SqlStore`."""

    _driver: Driver

    if TYPE_CHECKING:  # provided by the store class that mixes this in

        async def write_batch(
            self, snapshots: Sequence[InstanceSnapshot], audit: Sequence[AuditEntry] = ()
        ) -> None: ...

    async def append_audit(self, entries: Sequence[AuditEntry]) -> None:
        await self.write_batch((), entries)

    async def audit_log(
        self,
        *,
        key: InstanceKey | None = None,
        cluster: str | None = None,
        type: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Audit entries, newest first, filtered by instance, cluster and type."""
        where, args = rows.where(
            ("instance_key = ?", None if key is None else str(key)),
            ("cluster_name = ?", cluster),
            ("audit_type = ?", type),
        )
        found = await self._driver.fetch(
            f"SELECT id, {rows.AUDIT_COLUMNS} FROM audit{where} ORDER BY id DESC LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
        return [rows.audit_of(row) for row in found]
